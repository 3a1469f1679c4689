"""Data-parallel training: which process this is, and the collectives training needs.

One process (``train.devices: 1``, the default) trains exactly as before: :data:`SINGLE`
turns every operation here into the identity, and no process group exists. With more
(``train.devices`` per node times ``train.nodes``) the train stage runs under ``torchrun``
(:mod:`audioclf.training.launch`), and each process joins the group with
:func:`process_group` (NCCL on GPUs, gloo on the CPU), which gives its :class:`Ranks`:

* the model trains wrapped in ``DistributedDataParallel``; gradients are averaged over the
  processes once per optimizer step, not at each micro-batch of gradient accumulation;
* every process draws the same epoch order (shuffled or class-balanced, from the seed) and
  takes every ``world``-th draw of it (:meth:`Ranks.shard`, padded as torch's
  ``DistributedSampler`` pads), so ``train.batch_size`` is per process;
* augmentation and dropout draw from streams of each process's own, seeded from (seed, rank);
* training metrics are computed over every process's examples; validation is predicted by
  all, each a share, and scored once, by rank 0, which also takes the early-stopping
  decision and broadcasts both;
* only rank 0 writes checkpoints, curves and reports and logs to MLflow. The resumable
  state holds every process's random states, and rank 0 sends a state to resume from to
  the others (which may run on machines that do not have it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from audioclf.config.schema import ParamsError
from audioclf.config.training import TrainConfig
from audioclf.devices import resolve_device
from audioclf.features.table import SplitData
from audioclf.models.inference import segment_probabilities

WORKER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets in every process it starts


def in_worker() -> bool:
    """Whether this process was started by torchrun (or another launcher of torch.distributed)."""
    return all(name in os.environ for name in WORKER_ENV)


def processes_per_node(cfg: TrainConfig) -> int:
    """``train.devices`` resolved: ``auto`` is every visible GPU (one process on the CPU).

    Raises:
        ParamsError: more processes than GPUs asked for on CUDA.
    """
    device = resolve_device(cfg.device, "train.device")
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if cfg.devices == "auto":
        return max(gpus, 1)
    if device.type == "cuda" and cfg.devices > gpus:
        raise ParamsError(
            f"params: 'train.devices' is {cfg.devices} but torch sees {gpus} CUDA device(s); "
            f"use train.devices=auto or at most {gpus} (or train.device=cpu)"
        )
    return cfg.devices


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel training (:data:`SINGLE`: alone).

    Attributes:
        rank: global rank; rank 0 writes and logs.
        world: number of processes.
        local_rank: rank on this machine: the GPU it trains on.
        backend: ``nccl`` or ``gloo`` (empty alone).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def writer(self) -> bool:
        """Whether this process writes the outputs and logs to MLflow (rank 0)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def device(self, name: str) -> torch.device:
        """The device ``train.device`` names, on this process's GPU when data-parallel."""
        device = resolve_device(name, "train.device")
        return (
            torch.device("cuda", self.local_rank)
            if self.parallel and device.type == "cuda"
            else device
        )

    def shard_size(self, n: int) -> int:
        """Examples of ``n`` each process takes (the total padded to a multiple of ``world``)."""
        return math.ceil(n / self.world)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This process's share of an epoch's order (N,): every ``world``-th draw from ``rank``.

        The order is padded with its own start to a multiple of ``world``, so that every
        process has as many batches (each optimizer step is a collective).
        """
        if not self.parallel:
            return order
        total = self.shard_size(len(order)) * self.world
        padded = order.repeat(math.ceil(total / max(len(order), 1)))[:total]
        return padded[self.rank :: self.world]

    def _comm(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` where the backend reduces: its GPU for NCCL, the CPU for gloo."""
        return t.to(f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu")

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every process's ``t`` (the same shape on all), concatenated in rank order along dim 0."""
        if not self.parallel:
            return t
        mine = self._comm(t.contiguous())
        parts = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(parts, mine)
        return torch.cat(parts).to(t.device)

    def total(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of ``t`` over the processes."""
        if not self.parallel:
            return t
        summed = self._comm(t.clone())
        dist.all_reduce(summed)
        return summed.to(t.device)

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable), on every process."""
        if not self.parallel:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module a training step calls: ``DistributedDataParallel`` around ``model`` when
        data-parallel (which starts every process from rank 0's weights), else ``model``."""
        if not self.parallel:
            return model
        on_gpu = next(model.parameters()).is_cuda
        return DistributedDataParallel(model, device_ids=[self.local_rank] if on_gpu else None)

    def no_sync(self, net: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Around a micro-batch's forward and backward: gradients are averaged only if ``sync``."""
        return net.no_sync() if self.parallel and not sync else contextlib.nullcontext()

    def augment_generator(self, seed: int, generator: torch.Generator) -> torch.Generator:
        """What augmentation draws from: the training generator itself in one process; when
        data-parallel, a generator of this process's own, dropout's stream reseeded alike."""
        if not self.parallel:
            return generator
        own = int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])
        torch.manual_seed(own)
        return torch.Generator().manual_seed(own)

    def random_states(self, augment: torch.Generator) -> dict:
        """Every process's own random states, for the resumable state (nothing in one process)."""
        if not self.parallel:
            return {}
        cuda = torch.cuda.get_rng_state(self.local_rank) if self.backend == "nccl" else None
        own = {"torch": torch.get_rng_state(), "augment": augment.get_state(), "cuda": cuda}
        states: list = [None] * self.world
        dist.all_gather_object(states, own)
        return {"rng_ranks": states}

    def restore_random_states(self, state: dict, augment: torch.Generator) -> None:
        """This process's random states from a resumable state of :meth:`random_states`."""
        if not self.parallel:
            return
        own = state["rng_ranks"][self.rank]
        torch.set_rng_state(own["torch"])
        augment.set_state(own["augment"])
        if own["cuda"] is not None:
            torch.cuda.set_rng_state(own["cuda"], self.local_rank)


SINGLE = Ranks()


def predict_shared(
    model: nn.Module,
    data: SplitData,
    n_classes: int,
    batch_size: int,
    device: torch.device,
    amp: torch.dtype | None,
    ranks: Ranks,
) -> np.ndarray | None:
    """Softmax probabilities (S, C) of a split, each process predicting a contiguous share.

    Rank 0's buffers (BatchNorm statistics) are sent to all first, so the model scored is
    the one rank 0 saves. Returns the probabilities on rank 0, None on the others.
    """
    for buffer in model.buffers():  # on the device the backend reduces on, as the model is
        dist.broadcast(buffer.data, 0)
    share = ranks.shard_size(len(data))
    lo = min(ranks.rank * share, len(data))
    hi = min(lo + share, len(data))
    part = dataclasses.replace(
        data, rows=data.rows[lo:hi], y=data.y[lo:hi], paths=data.paths[lo:hi]
    )
    probs = torch.zeros(share, n_classes)
    if hi > lo:
        probs[: hi - lo] = torch.from_numpy(
            segment_probabilities(model, part, batch_size, device, amp)
        )
    gathered = ranks.gather(probs)[: len(data)]
    return gathered.numpy() if ranks.writer else None


@contextlib.contextmanager
def process_group(cfg: TrainConfig) -> Iterator[Ranks]:
    """This process's :class:`Ranks` for the block: :data:`SINGLE` outside torchrun or in a group
    of one; else the joined process group (NCCL on GPUs, gloo on the CPU), left on exit.

    Raises:
        ParamsError: torchrun started another number of processes than the params ask for.
    """
    if not in_worker():
        yield SINGLE
        return
    ranks = Ranks(*(int(os.environ[name]) for name in WORKER_ENV))
    expected = processes_per_node(cfg) * cfg.nodes
    if ranks.world != expected:
        raise ParamsError(
            f"params: torchrun started {ranks.world} process(es), but train.devices x train.nodes "
            f"is {expected}; set them to match (e.g. -S train.devices={ranks.world})"
        )
    if not ranks.parallel:
        yield SINGLE
        return
    cuda = resolve_device(cfg.device, "train.device").type == "cuda"
    if cuda:
        torch.cuda.set_device(ranks.local_rank)
    ranks = dataclasses.replace(ranks, backend="nccl" if cuda else "gloo")
    dist.init_process_group(ranks.backend)
    if not ranks.writer:  # rank 0 reports progress; the others only warnings
        logging.getLogger("audioclf").setLevel(logging.WARNING)
    try:
        yield ranks
    finally:
        dist.destroy_process_group()
