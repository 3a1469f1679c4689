"""Prediction over recordings of any length: sliding windows, batched, decoding beside the network.

A reader thread decodes each recording in blocks (:mod:`audioclf.features.stream`), cuts it
into windows of the model's segment length ``hop`` samples apart and runs the front-end on
full batches of windows (batches span recordings, so many short files still fill them); the
calling thread runs the network on those features. Memory holds a few batches and one block
of audio, whatever a recording's length. A recording that cannot be decoded, or whose scores are
not finite, comes back with its reason; the others go on. Every failure of the reader thread
reaches the caller, and a :class:`Budget` bounds one call (a served request): its audio seconds,
its deadline, and a cancel event that stops the reader and the network within a window.
"""

from __future__ import annotations

import copy
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from audioclf.deploy.model import AudioModel
from audioclf.errors import UserError
from audioclf.features.audio import DecodeError
from audioclf.features.stream import Window, sliding_windows
from audioclf.models.inference import CPU, channels_last, for_cpu_inference, to_device

# an input: its name and a function giving its mono blocks at a sample rate
Source = tuple[str, Callable[[int], Iterator[np.ndarray]]]
PREFETCH = 4  # feature batches the reader may be ahead of the network
# windows per front-end and network call: the default cnn is fastest per window at 16-32 on
# the CPU, and its activations at 64 pushed a 2-hour predict past 1 GB (bench-predict)
BATCH_SIZE = 16
# above it a batch buys no speed, only memory: a 10-s window at 48 kHz makes 2 GB of samples
MAX_BATCH_SIZE = 1024
POLL_S = 0.1  # how often a waiting thread looks at the budget and at the other thread
# terminal escapes (CSI and OSC sequences), other control characters, and object reprs with an
# address: none belongs in a message that is written to a table, a log or a response
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)?")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_REPRS = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


@dataclass
class Recording:
    """One input's windows and class probabilities.

    Attributes:
        name: the file (or input) it came from.
        sample_rate: the model's rate, which ``starts`` and ``stops`` count samples at.
        starts, stops: (W,) int64 first sample and last sample + 1 of each window.
        fills: per window ``""`` (whole) or how the last, partial one was filled (``pad``, ``repeat``).
        probs: (W, C) softmax probabilities, in the model's label order.
        samples: the recording's length in samples at ``sample_rate``.
        error: why it could not be decoded (then it has no windows).
        embeddings: (W, D) each window's input to the network's last layer, when asked for.
    """

    name: str
    sample_rate: int
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    stops: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fills: list[str] = field(default_factory=list)
    probs: np.ndarray | None = None
    samples: int = 0
    error: str | None = None
    embeddings: np.ndarray | None = None

    @property
    def duration_s(self) -> float:
        return self.samples / self.sample_rate


@dataclass
class Timings:
    """Seconds spent decoding (and windowing), in the front-end and in the network."""

    decode: float = 0.0
    frontend: float = 0.0
    network: float = 0.0
    windows: int = 0


@dataclass
class Budget:
    """What one call of :func:`predict_recordings` may spend (a served request's limits).

    Attributes:
        max_audio_s: decoded seconds of audio, all recordings together; the recording that
            crosses it and those after it fail with the reason, the earlier ones are answered.
        deadline: a :func:`time.monotonic` time after which the work stops.
        cancel: set by the caller (a client gone, a server shutting down) to stop the work.
    """

    max_audio_s: float = math.inf
    deadline: float | None = None
    cancel: threading.Event | None = None

    def stopped(self) -> str | None:
        """Why the work must stop now, or None while it may go on."""
        if self.cancel is not None and self.cancel.is_set():
            return "the request was cancelled"
        if self.deadline is not None and time.monotonic() > self.deadline:
            return "the request ran past its deadline"
        return None


class PredictError(UserError, ValueError):
    """Prediction settings that cannot work with this model."""


class Stopped(PredictError):
    """The call's :class:`Budget` ran out (deadline or cancel); the message says which."""


def clean(message: str) -> str:
    """``message`` without terminal escapes, control characters or ``<... object at 0x...>``.

    >>> clean("Error opening <_io.BytesIO object at 0x7fa5>: \\x1b[31mbad\\x1b[0m")
    'Error opening the audio: bad'
    """
    text = _REPRS.sub("the audio", message)
    return _CONTROLS.sub(" ", _ESCAPES.sub("", text)).strip()


def check_batch_size(batch_size: int, name: str = "--batch-size") -> int:
    """``batch_size``, after checking that it lies in [1, :data:`MAX_BATCH_SIZE`]."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise PredictError(
            f"{name} must be an integer in [1, {MAX_BATCH_SIZE}] windows, got {batch_size}"
        )
    return batch_size


def window_hop(model: AudioModel, overlap_s: float, name: str = "--overlap") -> int:
    """Samples between window starts: the segment length less ``overlap_s`` seconds.

    Raises:
        PredictError: ``overlap_s`` outside [0, the window's length), naming it as ``name``.
    """
    n, rate = model.features.segment_samples, model.features.sample_rate
    if not 0 <= overlap_s < n / rate or not 0 <= (overlap := int(round(overlap_s * rate))) < n:
        raise PredictError(
            f"{name} must be in [0, {n / rate:g}) s (the model's window is "
            f"{n / rate:g} s), got {overlap_s:g}"
        )
    return n - overlap


def predict_recordings(
    model: AudioModel,
    sources: Iterable[Source],
    *,
    overlap_s: float = 0.0,
    batch_size: int = BATCH_SIZE,
    workers: int = 0,
    progress: Callable[[float], None] | None = None,
    timings: Timings | None = None,
    budget: Budget | None = None,
    device: torch.device = CPU,
    embeddings: bool = False,
) -> Iterator[Recording]:
    """Class probabilities of every window of every source, one :class:`Recording` per source, in order.

    Args:
        model: the loaded model (:func:`audioclf.deploy.model.load_model`).
        sources: (name, blocks) pairs; ``blocks(sample_rate)`` yields mono float32 blocks.
        overlap_s: seconds shared by consecutive windows.
        batch_size: windows per front-end and network call, in [1, :data:`MAX_BATCH_SIZE`].
        workers: threads (0: one per core): one decodes and runs the front-end, the others the network.
        progress: called with the audio-seconds each finished batch covered.
        timings: filled with the seconds spent in each part.
        budget: limits of this call; none by default.
        device: runs the network (decoding and the front-end stay on the CPU).
        embeddings: also return each window's input to the network's last layer.

    Raises:
        PredictError: settings that cannot work with this model.
        Stopped: the budget's deadline passed or its cancel event was set (the recordings
            yielded before are complete; the reader has stopped when this is raised).
        MemoryError, or any other failure of the reader thread, raised here in the caller.
    """
    check_batch_size(batch_size)
    hop, timings, budget = window_hop(model, overlap_s), timings or Timings(), budget or Budget()
    network = scorer(model, torch.device(device), embeddings)
    workers = workers or len(os.sched_getaffinity(0))
    inbox: queue.Queue = queue.Queue(PREFETCH)
    stop = threading.Event()
    reader = threading.Thread(
        target=_read,
        args=(model, sources, hop, batch_size, inbox, stop, timings, budget),
        name="audioclf-predict-reader",
        daemon=True,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, workers - 1))
    reader.start()
    try:
        yield from _score(model, network, inbox, reader, progress, timings, budget)
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                inbox.get(timeout=POLL_S)
            except queue.Empty:
                pass
        torch.set_num_threads(threads)


def _next(inbox: queue.Queue, reader: threading.Thread, budget: Budget):
    """The reader's next message; raises when the budget runs out or the reader died silently."""
    while True:
        if reason := budget.stopped():
            raise Stopped(reason)
        try:
            return inbox.get(timeout=POLL_S)
        except queue.Empty:
            if not reader.is_alive() and inbox.empty():
                raise RuntimeError("the prediction reader thread ended without a result") from None


def _score(
    model, network, inbox, reader, progress, timings: Timings, budget
) -> Iterator[Recording]:
    """The network over the reader's batches; yields each recording once all its windows are scored."""
    rate = model.features.sample_rate
    pending: dict[int, dict] = {}  # source index -> its windows so far and, once read, its length
    done_upto = 0
    while True:
        item = _next(inbox, reader, budget)
        if item is None:
            return
        kind, payload = item
        if kind == "crash":
            raise payload
        if kind == "batch":
            _score_batch(network, payload, pending, timings)
            if progress is not None:
                progress(sum(w.stop - w.start for _, w in payload[1]) / rate)
        elif kind == "open":
            index, name = payload
            pending[index] = {"name": name, "windows": [], "expected": None, "error": None}
        else:  # "end": the reader is through with the recording
            index, expected, samples, error = payload
            entry = pending[index]
            entry.update(expected=expected, samples=samples, error=entry["error"] or error)
        # recordings are handed back in order, once read to the end and every window scored
        while done_upto in pending and _finished(pending[done_upto]):
            yield _recording(pending.pop(done_upto), rate)
            done_upto += 1


def _score_batch(network, payload, pending: dict, timings: Timings) -> None:
    """Score one batch into ``pending``; a recording with a non-finite score fails with the reason."""
    features, meta = payload
    start = time.perf_counter()
    probs, vectors = network(features)  # (B, C), (B, D) or None
    timings.network += time.perf_counter() - start
    timings.windows += len(meta)
    # (B,) a window whose features overflowed may still get finite scores from the network
    finite = np.isfinite(probs).all(axis=1) & torch.isfinite(features).flatten(1).all(1).numpy()
    for b, ((index, window), p, ok) in enumerate(zip(meta, probs, finite, strict=True)):
        entry = pending.get(index)  # None: a recording that failed later, already handed back
        if entry is None:
            continue
        if not ok and entry["error"] is None:
            entry["error"] = (
                "non-finite scores: the samples are too large for the front-end "
                "(audio should lie within [-1, 1])"
            )
        vector = None if vectors is None else vectors[b]
        entry["windows"].append((window.start, window.stop, window.fill, p, vector))


def scorer(model: AudioModel, device: torch.device, embeddings: bool):
    """features (B, C, F, T) -> (probabilities (B, n_classes), embeddings (B, D) or None).

    The model's own path (its CPU copy, or its runtime) unless ``device`` is not the CPU or
    ``embeddings`` are asked for: then the model's copy on ``device`` (:meth:`AudioModel.on_device`,
    made once), or for embeddings a copy whose last linear layer's input (the penultimate
    layer's output) is kept on the way.
    """
    if device.type == "cpu" and not embeddings:
        return lambda features: (model.probabilities(features), None)
    if model.classifier is None:
        raise PredictError(
            "--device and --embeddings need the torch model: pass its checkpoint (or the models/ "
            "folder, or its MLflow Model), not an ONNX export"
        )
    kept: list[torch.Tensor] = []
    if embeddings:  # a copy of its own, with the hook that keeps the last layer's input
        net = copy.deepcopy(model.classifier).eval()
        net = for_cpu_inference(net) if device.type == "cpu" else net.to(device)
        last = final_layer(net, len(model.labels))
        last.register_forward_pre_hook(lambda module, args: kept.append(args[0]))
    else:
        net = model.on_device(device)

    @torch.inference_mode()
    def run(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        kept.clear()
        x = channels_last(features) if device.type == "cpu" else to_device(features, device)
        probs = net(x).float().softmax(dim=1).cpu().numpy()  # (B, C)
        return probs, kept[0].float().cpu().numpy() if embeddings else None  # (B, D)

    return run


def final_layer(net: nn.Module, n_classes: int) -> nn.Linear:
    """The network's last linear layer giving ``n_classes`` outputs (its logits)."""
    layers = [m for m in net.modules() if isinstance(m, nn.Linear) and m.out_features == n_classes]
    if not layers:
        raise PredictError(
            f"{type(net).__name__} has no linear layer giving its {n_classes} logits: no embeddings"
        )
    return layers[-1]


def _finished(entry: dict) -> bool:
    if entry["expected"] is None:
        return False
    return entry["error"] is not None or len(entry["windows"]) == entry["expected"]


def _recording(entry: dict, rate: int) -> Recording:
    if entry["error"] is not None:
        error = clean(entry["error"])
        return Recording(entry["name"], rate, samples=entry["samples"], error=error)
    starts, stops, fills, probs, vectors = zip(*entry["windows"], strict=True)
    return Recording(
        entry["name"],
        rate,
        np.array(starts, dtype=np.int64),
        np.array(stops, dtype=np.int64),
        list(fills),
        np.stack(probs),
        samples=entry["samples"],
        embeddings=None if vectors[0] is None else np.stack(vectors),
    )


def _put(inbox: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item`` unless the caller has stopped listening; returns whether it was put."""
    while not stop.is_set():
        try:
            inbox.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _read(model, sources, hop, batch_size, inbox, stop, timings: Timings, budget: Budget) -> None:
    """The reader thread: decode, window and featurize every source; the front-end on one thread.

    Every failure, an allocation included, is handed to the caller as a ``crash`` message.
    """
    try:
        torch.set_num_threads(1)
        _read_all(model, sources, hop, batch_size, inbox, stop, timings, budget)
    except BaseException as exc:  # noqa: BLE001  (handed to the caller, which raises it)
        _put(inbox, ("crash", exc), stop)


def _read_all(model, sources, hop, batch_size, inbox, stop, timings, budget: Budget) -> None:
    cfg = model.features
    n, rate = cfg.segment_samples, cfg.sample_rate
    batch = np.empty((batch_size, n), dtype=np.float32)
    meta: list[tuple[int, Window]] = []
    cap = budget.max_audio_s * rate  # samples the whole call may decode
    total = 0  # samples decoded by the recordings before this one

    def halted() -> bool:
        return stop.is_set() or budget.stopped() is not None

    def flush() -> bool:
        if meta:
            start = time.perf_counter()
            features = model.featurize(batch[: len(meta)])
            timings.frontend += time.perf_counter() - start
            if not _put(inbox, ("batch", (features, list(meta))), stop):
                return False
            meta.clear()
        return True

    for index, (name, blocks) in enumerate(sources):
        if not _put(inbox, ("open", (index, name)), stop):
            return
        count, end, error = 0, 0, None
        if total >= cap:
            error = f"over the request's cap of {budget.max_audio_s:g} s of audio"
        else:
            try:
                windows = sliding_windows(blocks(rate), n, hop, cfg.short_clips)
                while not halted():
                    start = time.perf_counter()
                    window = next(windows, None)
                    timings.decode += time.perf_counter() - start
                    if window is None:
                        break
                    if total + window.stop > cap:
                        raise DecodeError(
                            f"over the request's cap of {budget.max_audio_s:g} s of audio"
                        )
                    batch[len(meta)] = window.samples
                    meta.append((index, window))
                    count, end = count + 1, window.stop
                    if len(meta) == batch_size and not flush():
                        return
            except DecodeError as exc:
                # its windows not yet flushed are the batch's last rows: drop them
                meta[:] = [(i, w) for i, w in meta if i != index]
                error = str(exc)
            if halted():
                return
        total += end
        # windows already queued are scored before this is read, those in ``meta`` after it
        if not _put(inbox, ("end", (index, count, end, error)), stop):
            return
    if flush():
        _put(inbox, None, stop)
