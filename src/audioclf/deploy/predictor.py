"""Prediction over recordings of any length: sliding windows, batched, decoding beside the network.

A reader thread decodes each recording in blocks (:mod:`audioclf.features.stream`), cuts it
into windows of the model's segment length ``hop`` samples apart and runs the front-end on
full batches of windows (batches span recordings, so many short files still fill them); the
calling thread runs the network on those features. Memory holds a few batches and one block
of audio, whatever a recording's length. A recording that cannot be decoded comes back with
its reason; the others go on.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from audioclf.deploy.model import AudioModel
from audioclf.errors import UserError
from audioclf.features.audio import DecodeError
from audioclf.features.stream import Window, sliding_windows

# an input: its name and a function giving its mono blocks at a sample rate
Source = tuple[str, Callable[[int], Iterator[np.ndarray]]]
PREFETCH = 4  # feature batches the reader may be ahead of the network
# windows per front-end and network call: the default cnn is fastest per window at 16-32 on
# the CPU, and its activations at 64 pushed a 2-hour predict past 1 GB (bench-predict)
BATCH_SIZE = 16


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
    """

    name: str
    sample_rate: int
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    stops: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    fills: list[str] = field(default_factory=list)
    probs: np.ndarray | None = None
    samples: int = 0
    error: str | None = None

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


class PredictError(UserError, ValueError):
    """Prediction settings that cannot work with this model."""


def window_hop(model: AudioModel, overlap_s: float) -> int:
    """Samples between window starts: the segment length less ``overlap_s`` seconds."""
    n, rate = model.features.segment_samples, model.features.sample_rate
    overlap = int(round(overlap_s * rate))
    if not 0 <= overlap < n:
        raise PredictError(
            f"--overlap must be in [0, {n / rate:g}) s (the model's window is "
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
) -> Iterator[Recording]:
    """Class probabilities of every window of every source, one :class:`Recording` per source, in order.

    Args:
        model: the loaded model (:func:`audioclf.deploy.model.load_model`).
        sources: (name, blocks) pairs; ``blocks(sample_rate)`` yields mono float32 blocks.
        overlap_s: seconds shared by consecutive windows.
        batch_size: windows per front-end and network call.
        workers: threads (0: one per core): one decodes and runs the front-end, the others the network.
        progress: called with the audio-seconds each finished batch covered.
        timings: filled with the seconds spent in each part.
    """
    if batch_size < 1:
        raise PredictError(f"--batch-size must be positive, got {batch_size}")
    hop, timings = window_hop(model, overlap_s), timings or Timings()
    workers = workers or len(os.sched_getaffinity(0))
    inbox: queue.Queue = queue.Queue(PREFETCH)
    stop = threading.Event()
    reader = threading.Thread(
        target=_read, args=(model, sources, hop, batch_size, inbox, stop, timings), daemon=True
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, workers - 1))
    reader.start()
    try:
        yield from _score(model, inbox, progress, timings)
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                inbox.get(timeout=0.1)
            except queue.Empty:
                pass
        torch.set_num_threads(threads)


def _score(model, inbox: queue.Queue, progress, timings: Timings) -> Iterator[Recording]:
    """The network over the reader's batches; yields each recording once all its windows are scored."""
    rate = model.features.sample_rate
    pending: dict[int, dict] = {}  # source index -> its windows so far and, once read, its length
    done_upto = 0
    while True:
        item = inbox.get()
        if item is None:
            return
        kind, payload = item
        if kind == "crash":
            raise payload
        if kind == "batch":
            features, meta = payload
            start = time.perf_counter()
            probs = model.probabilities(features)  # (B, C)
            timings.network += time.perf_counter() - start
            timings.windows += len(meta)
            for (index, window), p in zip(meta, probs, strict=True):
                if index in pending:  # else: a recording that failed later, already handed back
                    pending[index]["windows"].append((window.start, window.stop, window.fill, p))
            if progress is not None:
                progress(sum(w.stop - w.start for _, w in meta) / rate)
        elif kind == "open":
            index, name = payload
            pending[index] = {"name": name, "windows": [], "expected": None}
        else:  # "end": the reader is through with the recording
            index, expected, samples, error = payload
            pending[index].update(expected=expected, samples=samples, error=error)
        # recordings are handed back in order, once read to the end and every window scored
        while done_upto in pending and _finished(pending[done_upto]):
            yield _recording(pending.pop(done_upto), rate)
            done_upto += 1


def _finished(entry: dict) -> bool:
    if entry["expected"] is None:
        return False
    return entry["error"] is not None or len(entry["windows"]) == entry["expected"]


def _recording(entry: dict, rate: int) -> Recording:
    if entry["error"] is not None:
        return Recording(entry["name"], rate, samples=entry["samples"], error=entry["error"])
    starts, stops, fills, probs = zip(*entry["windows"], strict=True)
    return Recording(
        entry["name"],
        rate,
        np.array(starts, dtype=np.int64),
        np.array(stops, dtype=np.int64),
        list(fills),
        np.stack(probs),
        samples=entry["samples"],
    )


def _read(model, sources, hop, batch_size, inbox: queue.Queue, stop, timings: Timings) -> None:
    """The reader thread: decode, window and featurize every source; the front-end on one thread."""
    torch.set_num_threads(1)
    cfg = model.features
    n, rate = cfg.segment_samples, cfg.sample_rate
    batch = np.empty((batch_size, n), dtype=np.float32)
    meta: list[tuple[int, Window]] = []

    def flush() -> None:
        if meta:
            start = time.perf_counter()
            features = model.featurize(batch[: len(meta)])
            timings.frontend += time.perf_counter() - start
            inbox.put(("batch", (features, list(meta))))
            meta.clear()

    try:
        for index, (name, blocks) in enumerate(sources):
            inbox.put(("open", (index, name)))
            count, end, error = 0, 0, None
            windows = sliding_windows(blocks(rate), n, hop, cfg.short_clips)
            try:
                while not stop.is_set():
                    start = time.perf_counter()
                    window = next(windows, None)
                    timings.decode += time.perf_counter() - start
                    if window is None:
                        break
                    batch[len(meta)] = window.samples
                    meta.append((index, window))
                    count, end = count + 1, window.stop
                    if len(meta) == batch_size:
                        flush()
            except DecodeError as exc:
                # its windows not yet flushed are the batch's last rows: drop them
                meta[:] = [(i, w) for i, w in meta if i != index]
                error = str(exc)
            if stop.is_set():
                return
            # windows already queued are scored before this is read, those in ``meta`` after it
            inbox.put(("end", (index, count, end, error)))
        flush()
        inbox.put(None)
    except BaseException as exc:  # noqa: BLE001  (handed to the caller, which raises it)
        inbox.put(("crash", exc))
