"""Data-parallel scaling of the training step: samples per second on 1, 2, 4, 8 processes.

    python tests/benchmarks/train.py --devices 1 2 4 8 --device cuda   # a GPU machine
    python tests/benchmarks/train.py --devices 1 2 --device cpu        # gloo on the CPU

For each process count ``n`` it starts ``n`` processes with torch's elastic launcher (as
``torchrun --standalone`` does for the train stage) and runs the training's own step function
(:func:`audioclf.training.steps.train_one_epoch`: DistributedDataParallel, the sharded epoch
order, AMP as ``train.amp`` resolves) on a feature table of random segments of the shape the
params' front-end gives (128 x 173 by default), with the params' model, loss and optimizer.
Weak scaling: every process trains ``--steps`` batches of ``--batch-size`` (per process, as in
training), after ``--warmup`` batches that allocate memory and pick kernels. Throughput is
``n * steps * batch_size`` over the slowest process's wall time; the scaling efficiency is
``throughput(n) / (n * throughput(1))`` (the fewest processes measured stand in for 1). Each
process gets ``cores // n`` threads (``OMP_NUM_THREADS``), as the train stage gives them.
Counts above the visible GPUs are skipped. With ``--rounds`` above one the counts alternate
that many times and the best round of each counts (other users of a shared machine slow one
or the other); the load average before each is logged. Logs one line per count and returns
the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
import torch
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from audioclf.cli import command
from audioclf.config import load_params
from audioclf.config.frontends import resolve_auto
from audioclf.devices import resolve_device
from audioclf.features.table import (
    DATA_FILE,
    INDEX_FILE,
    META_FILE,
    FeatureTable,
    Row,
    load_split,
    write_index,
)
from audioclf.io import write_json
from audioclf.training.distributed import process_group
from audioclf.training.launch import threads_per_process
from audioclf.training.optim import resolve_amp
from audioclf.training.steps import build_fit, train_one_epoch

log = logging.getLogger("audioclf.benchmarks.train")  # shown by audioclf.cli.setup_logging


def random_table(folder: Path, segments: int, shape: tuple[int, int, int], classes: int) -> Path:
    """A feature table of ``segments`` random segments of ``shape`` (C, F, T), one file each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = np.memmap(folder / DATA_FILE, np.float32, "w+", shape=(segments, *shape))
    for i in range(0, segments, 256):
        data[i : i + 256] = rng.standard_normal((min(256, segments - i), *shape), np.float32)
    data.flush()
    del data
    labels = [f"class_{k:02d}" for k in range(classes)]
    rows = [Row(f"f{i:06d}.wav", labels[i % classes], f"g{i}", 0) for i in range(segments)]
    write_index(rows, folder / INDEX_FILE)
    meta = {"shape": [segments, *shape], "labels": labels, "frontend": {}, "frontend_key": "random"}
    (folder / META_FILE).write_text(json.dumps(meta))
    return folder


def _worker(params_file: str, table_dir: str, device: str, batch: int, warmup: int, steps: int):
    """One process: ``warmup`` then ``steps`` timed training batches; returns their wall time."""
    params = load_params(params_file)
    world = int(os.environ["WORLD_SIZE"])
    cfg = dataclasses.replace(
        params.train, devices=world, nodes=1, device=device, batch_size=batch, accumulate=1
    )
    spec = dataclasses.replace(params.train_spec(), train=cfg)
    table = FeatureTable(table_dir)
    files = [r.path for r in table.rows]
    with process_group(cfg) as ranks:
        dev = ranks.device(cfg.device)
        amp = resolve_amp(cfg.amp, dev)
        norm = {"mean": 0.0, "std": 1.0}
        per_batch = world * batch  # segments of one step of every process
        warm = load_split(table, files[: per_batch * warmup], norm)
        timed = load_split(table, files[per_batch * warmup : per_batch * (warmup + steps)], norm)
        torch.manual_seed(0)
        fit, _ = build_fit(spec, table, timed, dev, amp, ranks)
        generator = torch.Generator().manual_seed(0)
        train_one_epoch(fit, warm, generator)
        _, timing = train_one_epoch(fit, timed, generator)
    return timing["epoch_s"]


def measure(args: argparse.Namespace, n: int, table: Path) -> float:
    """Samples per second of ``n`` processes."""
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=n,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
    )
    threads = {"OMP_NUM_THREADS": str(threads_per_process(n))}
    saved = {k: os.environ.get(k) for k in threads}
    os.environ.update(threads)
    try:
        work = (str(args.params), str(table), args.device, args.batch_size, args.warmup, args.steps)
        seconds = elastic_launch(config, _worker)(*work)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return n * args.steps * args.batch_size / max(seconds.values())


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8], help="process counts")
    ap.add_argument("--device", default="auto", help="train.device: auto | cpu | cuda")
    ap.add_argument("--batch-size", type=int, default=32, help="per process")
    ap.add_argument("--steps", type=int, default=30, help="timed batches per process")
    ap.add_argument("--warmup", type=int, default=5, help="untimed batches per process first")
    ap.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="model, loss, front-end"
    )
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds; the best counts")
    ap.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    device = resolve_device(args.device, "--device")
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    counts = [n for n in args.devices if device.type == "cpu" or n <= gpus]
    for n in sorted(set(args.devices) - set(counts)):
        log.warning("bench-train: %d processes skipped: %d GPU(s) visible", n, gpus)
    where = torch.cuda.get_device_name(0) if gpus else f"{len(os.sched_getaffinity(0))} CPU cores"
    log.info(
        "bench-train: %s, batch %d per process, %d timed steps; %s, torch %s",
        params.model,
        args.batch_size,
        args.steps,
        where,
        torch.__version__,
    )
    best = dict.fromkeys(counts, 0.0)
    with tempfile.TemporaryDirectory(prefix="audioclf-bench-train-") as tmp:
        segments = max(counts) * args.batch_size * (args.warmup + args.steps)
        n_classes = params.data.synthetic.n_classes
        # params.yaml's auto front-end as the default pipeline chose it for its data
        profile = json.loads((args.params.parent / "reports" / "profile.json").read_text())
        shape = resolve_auto(params.features, profile)[0].shape
        table = random_table(Path(tmp) / "features", segments, shape, n_classes)
        for k in range(args.rounds):
            for n in counts:
                load = os.getloadavg()[0]
                rate = measure(args, n, table)
                log.info(
                    "bench-train: round %d, %d process(es): %.1f samples/s (load %.2f)",
                    k + 1,
                    n,
                    rate,
                    load,
                )
                best[n] = max(best[n], rate)
    rows = [{"processes": n, "samples_per_s": round(rate, 1)} for n, rate in best.items()]
    base = rows[0]["samples_per_s"] / rows[0]["processes"]  # per process, at the fewest processes
    for row in rows:
        row["efficiency"] = round(row["samples_per_s"] / (row["processes"] * base), 3)
        log.info(
            "bench-train: %d process(es): %8.1f samples/s, scaling efficiency %.3f",
            row["processes"],
            row["samples_per_s"],
            row["efficiency"],
        )
    if args.json:
        write_json({"device": where, "model": params.model, "rows": rows}, args.json)
    return rows


if __name__ == "__main__":
    command(main)
