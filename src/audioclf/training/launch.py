"""The train stage's data-parallel workers, started with torchrun from the stage itself.

With ``train.devices`` x ``train.nodes`` above one, :func:`launch_workers` runs
``torch.distributed.run`` (torchrun) in the stage's own process, so the stage stays one
command in ``dvc.yaml``: torchrun starts ``train.devices`` copies of the stage script on this
machine, with the same arguments, and waits for them. Each joins the process group
(:func:`audioclf.training.distributed.process_group`) and trains its share; rank 0 writes
the outputs. On one machine the rendezvous is torchrun's ``--standalone`` one (a free
local port, so concurrent trainings do not collide). On several, this machine is node 0
(rank 0, which writes the outputs DVC records, runs where DVC runs) and the rendezvous is
torchrun's static one at ``PET_MASTER_ADDR:PET_MASTER_PORT`` (torchrun's own
environment variables); every other machine starts its processes with the ``torchrun``
command this module logs (see docs/scaling.md). Each CPU process gets an equal share of
the cores (``OMP_NUM_THREADS``, unless set).
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

log = logging.getLogger(__name__)


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


def launch_workers(cfg: TrainConfig, script: str, argv: Sequence[str] | None) -> bool:
    """Run ``script argv`` under torchrun if ``cfg`` asks for more than one process.

    Args:
        cfg: the ``train`` params (``devices``, ``nodes``, ``device``).
        script: the stage script every process runs.
        argv: its arguments (None: this process's).

    Returns:
        True once the workers finished (their rank 0 wrote the outputs); False when this
        process should train by itself: one process asked for, or already a worker.

    Raises:
        WorkersFailed: a process failed (each logs its own error).
        SystemExit: the stage was stopped by a signal (``128 + signal``); torchrun stopped
            the workers, and a rerun resumes after the last finished epoch.
    """
    if in_worker() or processes_per_node(cfg) * cfg.nodes == 1:
        return False
    args = torchrun_args(cfg)
    command = [script, *(sys.argv[1:] if argv is None else argv)]
    if cfg.nodes > 1:
        others = shlex.join(["torchrun", *torchrun_args(cfg, node_rank=1), *command])
        log.info(
            "train: start nodes 1..%d with (their --node-rank each): %s", cfg.nodes - 1, others
        )
    log.info("train: %s", shlex.join(["torchrun", *args, *command]))
    set_threads = "OMP_NUM_THREADS" not in os.environ
    if set_threads:  # torchrun would give each process one thread
        os.environ["OMP_NUM_THREADS"] = str(threads_per_process(processes_per_node(cfg)))
    try:
        torchrun.run(torchrun.parse_args([*args, *command]))
    except ChildFailedError as exc:
        failed = ", ".join(f"rank {r}: exit code {f.exitcode}" for r, f in exc.failures.items())
        raise WorkersFailed(
            f"train: {len(exc.failures)} training process(es) failed ({failed}); "
            "the first error is logged above"
        ) from None
    except SignalException as exc:
        log.error("train: stopped by signal %d; a rerun resumes after the last epoch", exc.sigval)
        raise SystemExit(128 + exc.sigval) from None
    finally:
        if set_threads:
            del os.environ["OMP_NUM_THREADS"]
    return True
