"""Feature extraction against a naive per-file librosa loop, and the data wait of training.

    python -m audioclf.devtools.feature_benchmark --files 1000 [--seconds 4] [--naive-files 300]

Writes ``--files`` synthetic clips (44.1 kHz stereo 16-bit WAV by default, so decoding,
down-mixing and resampling are all exercised), then runs, each in a fresh process so
that its peak memory is its own:

* ``naive``: ``librosa.load(sr=22050)`` + ``melspectrogram`` + ``power_to_db`` per file,
  after a warm-up on a few files (numba compiles on first use), with BLAS and OpenMP
  limited to one thread: a serial loop gains nothing from them, and on a shared
  machine their spinning threads made it up to 3x slower (its best case is compared);
* ``ours``: :func:`audioclf.features.extract.extract_features` end to end into an empty store
  (decode, resample, front-end, store, assembled output), after a warm-up on a few
  files in a separate store; then the same call again, which is all store hits;
* ``train``: training steps of the default model reading batches from the cache
  written by ``ours``; the share of step time spent waiting for data.

The two extraction phases alternate for ``--rounds`` rounds and the best round of
each is compared, since other users of the machine slow one side or the other. Each
phase starts after ``os.sync()``, with nothing left for the disk to write from the
clips' generation or a former phase (``ours`` still writes and syncs its own output).
Prints both rates (files/s, audio-seconds/s), their ratio, peak memory and the data
wait share, and the load average before each phase.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from audioclf.cli import command
from audioclf.config.features import FeaturesConfig
from audioclf.data.manifest import read_manifest
from audioclf.devtools.feature_benchmark_phases import generate, naive, ours, train_wait

log = logging.getLogger(__name__)


def _phase(name: str, args: argparse.Namespace, work: str = "work") -> dict:
    """Run one phase in a fresh interpreter (its own peak memory) and parse its JSON line."""
    cmd = [
        sys.executable,
        "-m",
        "audioclf.devtools.feature_benchmark",
        "--phase",
        name,
        "--dir",
        str(args.dir),
        "--work",
        work,
        "--files",
        str(args.files),
        "--naive-files",
        str(args.naive_files),
        "--workers",
        str(args.workers),
        "--device",
        args.device,
        "--train-steps",
        str(args.train_steps),
        "--params",
        str(args.params),
    ]
    env = dict(os.environ)
    if name == "naive":
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if name == "ours":
        shutil.rmtree(
            args.dir / work, ignore_errors=True
        )  # a former run's output, deleted before the clock starts
    os.sync()  # no phase is timed while the disk still writes what the clips' generation or a former phase left
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load_before": round(load, 2)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=1000, help="clips to extract")
    ap.add_argument(
        "--naive-files", type=int, default=None, help="clips for the naive loop (default: --files)"
    )
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length")
    ap.add_argument("--sample-rate", type=int, default=44100, help="rate of the generated files")
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="features.workers (0: one per core)")
    ap.add_argument("--device", default="cpu", help="features.device")
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params whose model, loss and batch size the training phase uses",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="alternating naive/ours rounds; the best of each counts",
    )
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--phase", choices=["naive", "ours", "train"], help=argparse.SUPPRESS)
    ap.add_argument("--work", default="work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.naive_files = min(args.naive_files or args.files, args.files)
    # the default front-end (params.yaml's, for the default model)
    cfg = FeaturesConfig(kind="logmel", workers=args.workers, device=args.device)
    if args.phase:
        audio, work = args.dir / "audio", args.dir / args.work
        result = {
            "naive": lambda: naive(audio, args.naive_files, cfg),
            "ours": lambda: ours(audio, work, cfg),
            "train": lambda: train_wait(work, args.params, args.train_steps),
        }[args.phase]()
        sys.stdout.write(
            json.dumps(result) + "\n"
        )  # read back by the parent process, not a log line
        return result
    with tempfile.TemporaryDirectory(prefix="audioclf-bench-") as tmp:
        args.dir = args.dir or Path(tmp)
        start = time.perf_counter()
        manifest = args.dir / "audio" / "manifest.csv"
        if (
            not manifest.is_file() or len(read_manifest(manifest)) != args.files
        ):  # --dir kept from a former run
            generate(args.dir / "audio", args.files, args.seconds, args.sample_rate, args.channels)
        log.info(
            "%d clips of %g s (%d Hz, %d ch, 16-bit WAV) ready in %.1f s; %d cores",
            args.files,
            args.seconds,
            args.sample_rate,
            args.channels,
            time.perf_counter() - start,
            os.cpu_count(),
        )
        rounds = []
        for k in range(args.rounds):
            rounds.append(
                {"naive": _phase("naive", args), "ours": _phase("ours", args, work=f"work{k}")}
            )
            for name, r in rounds[-1].items():
                log.info(
                    f"round {k + 1} {name:5s} {r['files']:6d} files {r['audio_s']:9.1f} s audio in "
                    f"{r['elapsed_s']:7.2f} s: {r['files_per_s']:8.1f} files/s {r['audio_s_per_s']:9.1f} audio-s/s, "
                    f"{r['cpu_ms_per_file']} CPU-ms/file, peak RSS {r['peak_rss_mb']} MB "
                    f"(load before {r['load_before']})"
                )
        results = {
            name: max((r[name] for r in rounds), key=lambda r: r["audio_s_per_s"])
            for name in ("naive", "ours")
        }
        results["rounds"] = rounds
        results["train"] = _phase("train", args, work="work0")
    results["ratio_audio_s_per_s"] = round(
        results["ours"]["audio_s_per_s"] / results["naive"]["audio_s_per_s"], 2
    )
    log.info(
        f"best: naive {results['naive']['audio_s_per_s']} audio-s/s ({results['naive']['files_per_s']} files/s), "
        f"ours {results['ours']['audio_s_per_s']} audio-s/s ({results['ours']['files_per_s']} files/s)"
    )
    log.info(
        f"ratio (audio-seconds per second): {results['ratio_audio_s_per_s']}x; "
        f"rerun with the store warm: {results['ours']['store_hit_s']} s"
    )
    t = results["train"]
    log.info(
        f"training ({t['model']}): {t['steps']} steps of {t['batch_size']} from the table, {t['step_s']} s/step, "
        f"data wait {t['data_wait_share']:.2%} of step time"
    )
    return results


if __name__ == "__main__":
    command(main)
