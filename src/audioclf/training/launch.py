"""The train stage's data-parallel workers, started with torchrun from the stage itself.

With ``train.devices`` x ``train.nodes`` above one, the train stage becomes
``torch.distributed.run`` (torchrun), so the stage stays one command in ``dvc.yaml``:
torchrun starts ``train.devices`` copies of the stage script on this
machine, with the same arguments, and waits for them. Each joins the process group
(:func:`audioclf.training.distributed.process_group`) and trains its share; rank 0 writes
the outputs. On one machine the rendezvous is torchrun's ``--standalone`` one (a free
local port, so concurrent trainings do not collide). On several, this machine is node 0
(rank 0, which writes the outputs DVC records, runs where DVC runs) and the rendezvous is
torchrun's static one at ``PET_MASTER_ADDR:PET_MASTER_PORT`` (torchrun's own
environment variables); every other machine starts its processes with the ``torchrun``
command this module logs (see docs/scaling.md). Each CPU process gets an equal share of
the cores (``OMP_NUM_THREADS``, unless set).

The stage does not run torchrun in its own process (torchrun sets signal handlers and
environment variables for the whole process): it replaces itself (:func:`os.execve`) with
:func:`worker_command`'s command, this module's :func:`main`.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Sequence

from torch.distributed import run as torchrun
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from audioclf.config.schema import ParamsError
from audioclf.config.training import TrainConfig
from audioclf.errors import UserError
from audioclf.training.distributed import in_worker, processes_per_node

log = logging.getLogger("audioclf.training.launch")  # also as python -m


def threads_per_process(nproc: int) -> int:
    """An equal share of this machine's cores for each of ``nproc`` processes (at least one)."""
    return max(1, len(os.sched_getaffinity(0)) // nproc)


class WorkersFailed(UserError, RuntimeError):
    """A training process failed; its own error is in the log above this one."""


def torchrun_args(cfg: TrainConfig, node_rank: int = 0) -> list[str]:
    """torchrun's options for the training ``cfg`` asks for, on node ``node_rank``."""
    nproc = processes_per_node(cfg)
    args = [f"--nnodes={cfg.nodes}", f"--nproc-per-node={nproc}"]
    if cfg.nodes == 1:
        return [*args, "--standalone"]
    master = os.environ.get("PET_MASTER_ADDR")
    if not master:
        raise ParamsError(
            f"params: 'train.nodes' is {cfg.nodes}: set PET_MASTER_ADDR to this machine's address "
            "(reachable from the other nodes) and PET_MASTER_PORT to a free port (default 29500), "
            "or use train.nodes=1"
        )
    port = os.environ.get("PET_MASTER_PORT", "29500")
    return [*args, f"--node-rank={node_rank}", f"--master-addr={master}", f"--master-port={port}"]


def worker_command(
    cfg: TrainConfig, script: str, argv: Sequence[str] | None
) -> tuple[list[str], dict[str, str]] | None:
    """The command line and environment that run ``script argv`` under torchrun, if ``cfg`` asks
    for more than one process.

    The train stage replaces itself with this command (``os.execve``): torchrun then gets DVC's
    signals directly and stops its workers, and no setting of the stage's own process changes.
    The environment is this one plus an equal share of the cores per process
    (``OMP_NUM_THREADS``, unless set: torchrun alone would give each process one thread).

    Args:
        cfg: the ``train`` params (``devices``, ``nodes``, ``device``).
        script: the stage script every process runs.
        argv: its arguments (None: this process's).

    Returns:
        ``(argv, env)`` for :func:`os.execve`, or None when this process should train by
        itself: one process asked for, or already a worker.
    """
    if in_worker() or processes_per_node(cfg) * cfg.nodes == 1:
        return None
    args = torchrun_args(cfg)
    command = [script, *(sys.argv[1:] if argv is None else argv)]
    if cfg.nodes > 1:
        others = shlex.join(["torchrun", *torchrun_args(cfg, node_rank=1), *command])
        log.info(
            "train: start nodes 1..%d with (their --node-rank each): %s", cfg.nodes - 1, others
        )
    log.info("train: %s", shlex.join(["torchrun", *args, *command]))
    threads = str(threads_per_process(processes_per_node(cfg)))
    env = {"OMP_NUM_THREADS": threads, **os.environ}
    return [sys.executable, "-m", __name__, *args, *command], env


def main(argv: list[str]) -> int:
    """torchrun with ``argv`` (its options, the script, the script's arguments), its failures
    as one line each: a failed worker (:class:`WorkersFailed`), a signal (exit ``128 + signal``,
    after torchrun stopped the workers; a rerun resumes after the last finished epoch).
    """
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as exc:
        failed = ", ".join(f"rank {r}: exit code {f.exitcode}" for r, f in exc.failures.items())
        raise WorkersFailed(
            f"train: {len(exc.failures)} training process(es) failed ({failed}); "
            "the first error is logged above"
        ) from None
    except SignalException as exc:
        log.error("train: stopped by signal %d; a rerun resumes after the last epoch", exc.sigval)
        return 128 + exc.sigval
    return 0


if __name__ == "__main__":  # the process worker_command execs: torchrun's own, so its
    from audioclf.cli import command  # signal handlers and environment are its own too

    command(main)
