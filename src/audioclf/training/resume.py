"""Resuming a killed training from its last checkpoint (``last.pt``).

Training writes ``last.pt`` after every epoch: model, optimizer, scheduler and
loss-scaler states, the random states (torch, CUDA, the training generator), the
early-stopping state, the history so far and the MLflow run id. A rerun resumes
from it only if it is unfinished and was written for the same training (its run
key, below), and the best checkpoint
beside it belongs to the same training; otherwise training starts fresh and says
why. On the CPU a resumed run ends with the same metrics as an uninterrupted one.

The "same" is the *run key*: a hash of the training spec, the split's files, the
classes, the front-end, the device type, the precision and the number of processes
(:func:`run_key`). Data-parallel, rank 0 writes ``last.pt`` with every process's random
states and sends the state it resumes from to the others.
:func:`plan_folds` decides which folds of a cross-validation to reuse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audioclf.config.training import TrainSpec
from audioclf.devices import resolve_device
from audioclf.io import atomic_path
from audioclf.models.checkpoint import CheckpointError, read_state
from audioclf.training.optim import resolve_amp


@dataclasses.dataclass
class LoopState:
    """Where the epoch loop stands; ``token`` names one training from its fresh start."""

    token: str
    epoch: int = 0  # last completed epoch
    best_f1: float = -1.0
    best_epoch: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)


def run_key(
    spec: TrainSpec,
    train_paths: list[str],
    val_paths: list[str],
    labels: list[str],
    frontend_key: str,
    processes: int = 1,
) -> str:
    """Hash of everything a resumed training must share with the killed one (``processes``:
    how many train it data-parallel)."""
    device = resolve_device(spec.train.device, "train.device")
    amp = resolve_amp(spec.train.amp, device)
    blob = json.dumps(
        {
            "spec": spec.resolved(),
            "train": sorted(train_paths),
            "val": sorted(val_paths),
            "labels": list(labels),
            "frontend": frontend_key,
            "device": device.type,
            "amp": str(amp),
            "processes": processes,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _rng_states(generator: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def save_last(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
    loop: LoopState,
    run_key: str,
    run_id: str | None,
    finished: bool,
    extra: dict | None = None,
) -> None:
    """Write the resumable state atomically (a kill mid-write leaves the previous epoch's);
    ``extra`` adds entries (data-parallel: every process's random states)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": _rng_states(generator),
        "loop": dataclasses.asdict(loop),
        "run_key": run_key,
        "mlflow_run_id": run_id,
        "finished": finished,
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def find_resumable(last: Path, best: Path, key: str) -> tuple[dict | None, str]:
    """The saved state of a training of these inputs, if ``last`` holds one.

    A finished state (``state["finished"]``) is returned too: the caller decides whether
    to reuse it (the other folds of an interrupted cross-validation) or start afresh.

    Args:
        last, best: the fold's resumable state and best checkpoint.
        key: :func:`run_key` of the training about to run.

    Returns:
        The loaded state (or None to start fresh) and a sentence saying which and why.
    """
    last, best = Path(last), Path(best)
    if not last.is_file():
        return None, "starting fresh (no last checkpoint)"
    try:
        state = read_state(last)  # tensors and plain values only: a crafted file runs nothing
        loop = LoopState(**state["loop"])
    except (CheckpointError, KeyError, TypeError) as exc:
        return None, f"starting fresh: {last} is unreadable ({type(exc).__name__}: {exc})"
    if state.get("run_key") != key:
        return None, (
            f"starting fresh: {last} was written with other params, splits, classes, device or "
            "precision than this run"
        )
    try:
        best_token = read_state(best, mmap=True).get("train_token")
    except CheckpointError:
        best_token = None
    if best_token != loop.token:
        return None, f"starting fresh: {best} is missing or from another training than {last}"
    if state["finished"]:
        return state, f"{last} holds this training, finished (best: epoch {loop.best_epoch})"
    return (
        state,
        f"resuming after epoch {loop.epoch} from {last} (best so far: epoch {loop.best_epoch})",
    )


def restore(
    state: dict,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
) -> LoopState:
    """Load a :func:`find_resumable` state into freshly built training objects; returns the loop state."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    if (
        rng["cuda"] is not None
        and torch.cuda.is_available()
        and len(rng["cuda"]) == torch.cuda.device_count()
    ):
        torch.cuda.set_rng_state_all(rng["cuda"])
    return LoopState(**state["loop"])


def plan_folds(states: list[dict | None]) -> list[dict | None]:
    """Which saved fold states to use when (re)running a training stage.

    Only an interrupted run is continued: if some fold has no state or an unfinished
    one, finished folds are reused and unfinished ones resumed. If every fold finished
    (a forced rerun), all start afresh, so a rerun really retrains.
    """
    interrupted = any(s is not None for s in states) and any(
        s is None or not s["finished"] for s in states
    )
    return list(states) if interrupted else [None] * len(states)
