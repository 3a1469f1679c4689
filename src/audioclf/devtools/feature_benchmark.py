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
import logging
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audioclf.config.features import FeaturesConfig
from audioclf.data.manifest import Entry, describe, read_manifest, write_manifest
from audioclf.cli import command

log = logging.getLogger(__name__)
WARMUP_FILES = 8


def generate(folder: Path, n: int, seconds: float, sample_rate: int, channels: int, seed: int = 0) -> list[Entry]:
    """``n`` distinct clips (a gliding tone per channel plus noise) as 16-bit WAV, and their manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    entries = []
    for i in range(n):
        f0 = rng.uniform(200, 4000, size=channels)
        sweep = rng.uniform(-0.3, 0.3)
        x = 0.3 * np.sin(2 * np.pi * f0[None] * t[:, None] * (1 + sweep * t[:, None] / seconds))
        x += 0.03 * rng.standard_normal(x.shape)                                   # (N, channels)
        path = folder / f"clip{i:05d}.wav"
        sf.write(path, x.astype(np.float32), sample_rate, subtype="PCM_16")
        entries.append(describe(path, folder, label=f"c{i % 10}", group=f"g{i // 3}"))
    write_manifest(entries, folder / "manifest.csv")
    return entries


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def cpu_s() -> float:
    """CPU time of this process (all threads) and its finished children (the feature workers)."""
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def naive(folder: Path, n: int, cfg: FeaturesConfig) -> dict:
    """The per-file librosa loop on the first ``n`` clips, timed after a warm-up."""
    import librosa

    paths = [folder / e.path for e in read_manifest(folder / "manifest.csv")]

    def one(path):
        y, sr = librosa.load(path, sr=cfg.sample_rate)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels)
        return librosa.power_to_db(mel), len(y) / sr

    for path in paths[:WARMUP_FILES]:
        one(path)
    start, cpu = time.perf_counter(), cpu_s()
    seconds = sum(one(path)[1] for path in paths[:n])
    return _rates(n, seconds, time.perf_counter() - start, cpu_s() - cpu)


def ours(folder: Path, work: Path, cfg: FeaturesConfig) -> dict:
    """extract_features on every clip into an empty store, after a warm-up; then again (all hits)."""
    from audioclf.features.extract import extract_features

    shutil.rmtree(work, ignore_errors=True)      # an empty store: everything is computed
    entries = read_manifest(folder / "manifest.csv")
    extract_features(entries[:WARMUP_FILES], folder, cfg, work / "warm", store_dir=work / "warm_store")
    start, cpu = time.perf_counter(), cpu_s()
    report = extract_features(entries, folder, cfg, work / "features", store_dir=work / "store")
    elapsed, cpu = time.perf_counter() - start, cpu_s() - cpu
    start = time.perf_counter()
    again = extract_features(entries, folder, cfg, work / "features", store_dir=work / "store")
    hit_s = time.perf_counter() - start
    assert report["computed"] == len(entries) and again["computed"] == 0, (report, again)
    seconds = sum(e.duration for e in entries)
    return {**_rates(len(entries), seconds, elapsed, cpu), "store_hit_s": round(hit_s, 3),
            "segments": report["segments"], "cache_mb": round((work / "features" / "features.f32").stat().st_size / 2**20)}


def train_wait(work: Path, params_file: Path, steps: int) -> dict:
    """Share of training-step time spent waiting for batches read from the feature table.

    Model, loss, batch size and augmentation are those of ``params_file``, on the CPU.
    """
    import torch

    from audioclf.config import load_params
    from audioclf.features.table import FeatureTable, load_split
    from audioclf.training.loop import build_fit, normalisation, train_one_epoch

    spec = load_params(params_file).train_spec()
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, device="cpu", amp="off"))
    batch_size = spec.train.batch_size
    table = FeatureTable(work / "features")
    files = sorted({r.path for r in table.rows})
    norm = normalisation(table, files, spec.train.norm)
    full = load_split(table, files, norm)
    data = dataclasses.replace(full, rows=full.rows[:steps * batch_size], y=full.y[:steps * batch_size],
                               paths=full.paths[:steps * batch_size])
    warm = dataclasses.replace(full, rows=full.rows[-batch_size:], y=full.y[-batch_size:],
                               paths=full.paths[-batch_size:])
    torch.manual_seed(0)
    fit, _ = build_fit(spec, table, data, torch.device("cpu"), None)
    generator = torch.Generator().manual_seed(0)
    train_one_epoch(fit, warm, generator)             # first steps allocate and pick kernels
    _, timing = train_one_epoch(fit, data, generator)
    steps = -(-len(data) // batch_size)
    return {"model": spec.model, "steps": steps, "batch_size": batch_size,
            "step_s": round(timing["epoch_s"] / steps, 4),
            "data_wait_share": round(timing["data_wait_s"] / timing["epoch_s"], 4), "peak_rss_mb": round(peak_rss_mb())}


def _rates(files: int, seconds: float, elapsed: float, cpu: float) -> dict:
    return {"files": files, "audio_s": round(seconds, 1), "elapsed_s": round(elapsed, 3),
            "cpu_ms_per_file": round(1000 * cpu / files, 3),
            "files_per_s": round(files / elapsed, 1), "audio_s_per_s": round(seconds / elapsed, 1),
            "peak_rss_mb": round(peak_rss_mb())}


def _phase(name: str, args: argparse.Namespace, work: str = "work") -> dict:
    """Run one phase in a fresh interpreter (its own peak memory) and parse its JSON line."""
    cmd = [sys.executable, "-m", "audioclf.devtools.feature_benchmark", "--phase", name, "--dir", str(args.dir), "--work", work,
           "--files", str(args.files), "--naive-files", str(args.naive_files), "--workers", str(args.workers),
           "--device", args.device, "--train-steps", str(args.train_steps), "--params", str(args.params)]
    env = dict(os.environ)
    if name == "naive":
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if name == "ours":
        shutil.rmtree(args.dir / work, ignore_errors=True)    # a former run's output, deleted before the clock starts
    os.sync()   # no phase is timed while the disk still writes what the clips' generation or a former phase left
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load_before": round(load, 2)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000, help="clips to extract")
    ap.add_argument("--naive-files", type=int, default=None, help="clips for the naive loop (default: --files)")
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length")
    ap.add_argument("--sample-rate", type=int, default=44100, help="rate of the generated files")
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="features.workers (0: one per core)")
    ap.add_argument("--device", default="cpu", help="features.device")
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"),
                    help="params whose model, loss and batch size the training phase uses")
    ap.add_argument("--rounds", type=int, default=2, help="alternating naive/ours rounds; the best of each counts")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--phase", choices=["naive", "ours", "train"], help=argparse.SUPPRESS)
    ap.add_argument("--work", default="work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.naive_files = min(args.naive_files or args.files, args.files)
    cfg = FeaturesConfig(workers=args.workers, device=args.device)   # the default front-end (params.yaml's)
    if args.phase:
        audio, work = args.dir / "audio", args.dir / args.work
        result = {"naive": lambda: naive(audio, args.naive_files, cfg), "ours": lambda: ours(audio, work, cfg),
                  "train": lambda: train_wait(work, args.params, args.train_steps)}[args.phase]()
        sys.stdout.write(json.dumps(result) + "\n")   # read back by the parent process, not a log line
        return result
    with tempfile.TemporaryDirectory(prefix="audioclf-bench-") as tmp:
        args.dir = args.dir or Path(tmp)
        start = time.perf_counter()
        manifest = args.dir / "audio" / "manifest.csv"
        if not manifest.is_file() or len(read_manifest(manifest)) != args.files:   # --dir kept from a former run
            generate(args.dir / "audio", args.files, args.seconds, args.sample_rate, args.channels)
        log.info("%d clips of %g s (%d Hz, %d ch, 16-bit WAV) ready in %.1f s; %d cores", args.files, args.seconds,
                 args.sample_rate, args.channels, time.perf_counter() - start, os.cpu_count())
        rounds = []
        for k in range(args.rounds):
            rounds.append({"naive": _phase("naive", args), "ours": _phase("ours", args, work=f"work{k}")})
            for name, r in rounds[-1].items():
                log.info(f"round {k + 1} {name:5s} {r['files']:6d} files {r['audio_s']:9.1f} s audio in "
                         f"{r['elapsed_s']:7.2f} s: {r['files_per_s']:8.1f} files/s {r['audio_s_per_s']:9.1f} audio-s/s, "
                         f"{r['cpu_ms_per_file']} CPU-ms/file, peak RSS {r['peak_rss_mb']} MB "
                         f"(load before {r['load_before']})")
        results = {name: max((r[name] for r in rounds), key=lambda r: r["audio_s_per_s"]) for name in ("naive", "ours")}
        results["rounds"] = rounds
        results["train"] = _phase("train", args, work="work0")
    results["ratio_audio_s_per_s"] = round(results["ours"]["audio_s_per_s"] / results["naive"]["audio_s_per_s"], 2)
    log.info(f"best: naive {results['naive']['audio_s_per_s']} audio-s/s ({results['naive']['files_per_s']} files/s), "
             f"ours {results['ours']['audio_s_per_s']} audio-s/s ({results['ours']['files_per_s']} files/s)")
    log.info(f"ratio (audio-seconds per second): {results['ratio_audio_s_per_s']}x; "
             f"rerun with the store warm: {results['ours']['store_hit_s']} s")
    t = results["train"]
    log.info(f"training ({t['model']}): {t['steps']} steps of {t['batch_size']} from the table, {t['step_s']} s/step, "
             f"data wait {t['data_wait_share']:.2%} of step time")
    return results


if __name__ == "__main__":
    command(main)
