"""Feature extraction against a naive per-file librosa loop, and the data wait of training.

    python -m audioclf.benchmarks.features --files 1000 [--seconds 4] [--naive-files 300]

Writes ``--files`` synthetic clips (44.1 kHz stereo 16-bit WAV by default, so decoding,
down-mixing and resampling are all exercised), then runs, each in a fresh process so
that its peak memory is its own:

* ``naive``: ``librosa.load(sr=22050)`` + ``melspectrogram`` + ``power_to_db`` per file,
  after a warm-up on a few files (numba compiles on first use);
* ``ours``: :func:`audioclf.extract.extract_features` end to end into an empty store
  (decode, resample, front-end, store, assembled output), after a warm-up on a few
  files in a separate store; then the same call again, which is all store hits;
* ``train``: training steps of the default model reading batches from the cache
  written by ``ours``; the share of step time spent waiting for data.

Prints both rates (files/s, audio-seconds/s), their ratio, peak memory and the data
wait share, and the load average before each phase (other users slow both sides).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audioclf.config import FeaturesConfig
from audioclf.manifest import Entry, describe, read_manifest, write_manifest

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
    start = time.perf_counter()
    seconds = sum(one(path)[1] for path in paths[:n])
    return _rates(n, seconds, time.perf_counter() - start)


def ours(folder: Path, work: Path, cfg: FeaturesConfig) -> dict:
    """extract_features on every clip into an empty store, after a warm-up; then again (all hits)."""
    from audioclf.extract import extract_features

    entries = read_manifest(folder / "manifest.csv")
    extract_features(entries[:WARMUP_FILES], folder, cfg, work / "warm", store_dir=work / "warm_store")
    start = time.perf_counter()
    report = extract_features(entries, folder, cfg, work / "features", store_dir=work / "store")
    elapsed = time.perf_counter() - start
    start = time.perf_counter()
    again = extract_features(entries, folder, cfg, work / "features", store_dir=work / "store")
    hit_s = time.perf_counter() - start
    assert report["computed"] == len(entries) and again["computed"] == 0, (report, again)
    seconds = sum(e.duration for e in entries)
    return {**_rates(len(entries), seconds, elapsed), "store_hit_s": round(hit_s, 3),
            "segments": report["segments"], "cache_mb": round((work / "features" / "features.f32").stat().st_size / 2**20)}


def train_wait(work: Path, steps: int, batch_size: int) -> dict:
    """Share of training-step time spent waiting for batches read from the cache (default cnn)."""
    import torch

    from audioclf.config import TrainConfig
    from audioclf.features import FeatureStore
    from audioclf.losses import build_loss
    from audioclf.models import MODEL_CONFIGS, build_model
    from audioclf.train import load_split, normalisation, train_one_epoch

    store = FeatureStore(work / "features")
    files = sorted({r.path for r in store.rows})
    norm = normalisation(store, files)
    data = load_split(store, files, norm)
    n = steps * batch_size
    data = dataclasses.replace(data, rows=data.rows[:n], y=data.y[:n], paths=data.paths[:n])
    model = build_model("cnn", MODEL_CONFIGS["cnn"](), n_classes=len(store.labels), in_channels=store.in_channels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    cfg = TrainConfig(batch_size=batch_size)
    generator = torch.Generator().manual_seed(0)
    warm = dataclasses.replace(data, rows=data.rows[:batch_size], y=data.y[:batch_size])
    train_one_epoch(model, warm, build_loss("ce"), optimizer, scheduler, cfg, generator)
    _, timing = train_one_epoch(model, data, build_loss("ce"), optimizer, scheduler, cfg, generator)
    steps = -(-len(data) // batch_size)
    return {"steps": steps, "batch_size": batch_size, "step_s": round(timing["epoch_s"] / steps, 4),
            "data_wait_share": round(timing["data_wait_s"] / timing["epoch_s"], 4), "peak_rss_mb": round(peak_rss_mb())}


def _rates(files: int, seconds: float, elapsed: float) -> dict:
    return {"files": files, "audio_s": round(seconds, 1), "elapsed_s": round(elapsed, 3),
            "files_per_s": round(files / elapsed, 1), "audio_s_per_s": round(seconds / elapsed, 1),
            "peak_rss_mb": round(peak_rss_mb())}


def _phase(name: str, args: argparse.Namespace) -> dict:
    """Run one phase in a fresh interpreter (its own peak memory) and parse its JSON line."""
    cmd = [sys.executable, "-m", "audioclf.benchmarks.features", "--phase", name, "--dir", str(args.dir),
           "--files", str(args.files), "--naive-files", str(args.naive_files), "--workers", str(args.workers),
           "--device", args.device, "--train-steps", str(args.train_steps)]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
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
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--phase", choices=["naive", "ours", "train"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.naive_files = min(args.naive_files or args.files, args.files)
    cfg = FeaturesConfig(workers=args.workers, device=args.device)   # the seeds' front-end: params.yaml defaults
    if args.phase:
        audio, work = args.dir / "audio", args.dir / "work"
        result = {"naive": lambda: naive(audio, args.naive_files, cfg), "ours": lambda: ours(audio, work, cfg),
                  "train": lambda: train_wait(work, args.train_steps, 32)}[args.phase]()
        print(json.dumps(result))
        return result
    with tempfile.TemporaryDirectory(prefix="audioclf-bench-") as tmp:
        args.dir = args.dir or Path(tmp)
        start = time.perf_counter()
        generate(args.dir / "audio", args.files, args.seconds, args.sample_rate, args.channels)
        print(f"generated {args.files} clips of {args.seconds:g} s ({args.sample_rate} Hz, {args.channels} ch, "
              f"16-bit WAV) in {time.perf_counter() - start:.1f} s; {os.cpu_count()} cores", flush=True)
        results = {name: _phase(name, args) for name in ("naive", "ours", "train")}
    results["ratio_audio_s_per_s"] = round(results["ours"]["audio_s_per_s"] / results["naive"]["audio_s_per_s"], 2)
    for name in ("naive", "ours"):
        r = results[name]
        print(f"{name:6s} {r['files']:6d} files {r['audio_s']:9.1f} s audio in {r['elapsed_s']:7.2f} s: "
              f"{r['files_per_s']:8.1f} files/s {r['audio_s_per_s']:9.1f} audio-s/s, peak RSS {r['peak_rss_mb']} MB "
              f"(load before {r['load_before']})")
    print(f"ratio (audio-seconds per second): {results['ratio_audio_s_per_s']}x; "
          f"rerun with the store warm: {results['ours']['store_hit_s']} s")
    t = results["train"]
    print(f"training: {t['steps']} steps of {t['batch_size']} from the cache, {t['step_s']} s/step, "
          f"data wait {t['data_wait_share']:.2%} of step time")
    return results


if __name__ == "__main__":
    main()
