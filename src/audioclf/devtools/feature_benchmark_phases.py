"""The feature benchmark's phases, each run in a fresh process by :mod:`audioclf.devtools.feature_benchmark`:
the test clips, the naive librosa loop, our extraction, and the data wait of training.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audioclf.config.features import FeaturesConfig
from audioclf.data.manifest import Entry, describe, read_manifest, write_manifest

WARMUP_FILES = 8


def generate(
    folder: Path, n: int, seconds: float, sample_rate: int, channels: int, seed: int = 0
) -> list[Entry]:
    """``n`` distinct clips (a gliding tone per channel plus noise) as 16-bit WAV, and their manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    entries = []
    for i in range(n):
        f0 = rng.uniform(200, 4000, size=channels)
        sweep = rng.uniform(-0.3, 0.3)
        x = 0.3 * np.sin(2 * np.pi * f0[None] * t[:, None] * (1 + sweep * t[:, None] / seconds))
        x += 0.03 * rng.standard_normal(x.shape)  # (N, channels)
        path = folder / f"clip{i:05d}.wav"
        sf.write(path, x.astype(np.float32), sample_rate, subtype="PCM_16")
        entries.append(describe(path, folder, label=f"c{i % 10}", group=f"g{i // 3}"))
    write_manifest(entries, folder / "manifest.csv")
    return entries


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cpu_s() -> float:
    """CPU time of this process (all threads) and its finished children (the feature workers)."""
    return sum(
        u.ru_utime + u.ru_stime
        for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def naive(folder: Path, n: int, cfg: FeaturesConfig) -> dict:
    """The per-file librosa loop on the first ``n`` clips, in a process of its own that never imports
    audioclf (:mod:`audioclf.devtools.naive_librosa`), timed after a warm-up."""
    script = Path(__file__).with_name("naive_librosa.py")
    args = [folder, n, cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels]
    out = subprocess.run(
        [sys.executable, str(script), *map(str, args)], capture_output=True, text=True, check=True
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        **_rates(r["files"], r["audio_s"], r["elapsed_s"], r["cpu_s"]),
        "peak_rss_mb": round(r["peak_rss_mb"]),
    }


def ours(folder: Path, work: Path, cfg: FeaturesConfig) -> dict:
    """extract_features on every clip into an empty store, after a warm-up; then again (all hits)."""
    from audioclf.features.extract import extract_features

    shutil.rmtree(work, ignore_errors=True)  # an empty store: everything is computed
    entries = read_manifest(folder / "manifest.csv")
    extract_features(
        entries[:WARMUP_FILES], folder, cfg, work / "warm", store_dir=work / "warm_store"
    )
    start, cpu = time.perf_counter(), cpu_s()
    report = extract_features(entries, folder, cfg, work / "features", store_dir=work / "store")
    elapsed, cpu = time.perf_counter() - start, cpu_s() - cpu
    start = time.perf_counter()
    again = extract_features(entries, folder, cfg, work / "features", store_dir=work / "store")
    hit_s = time.perf_counter() - start
    assert report["computed"] == len(entries) and again["computed"] == 0, (report, again)
    seconds = sum(e.duration for e in entries)
    return {
        **_rates(len(entries), seconds, elapsed, cpu),
        "store_hit_s": round(hit_s, 3),
        "segments": report["segments"],
        "cache_mb": round((work / "features" / "features.f32").stat().st_size / 2**20),
    }


def train_wait(work: Path, params_file: Path, steps: int) -> dict:
    """Share of training-step time spent waiting for batches read from the feature table.

    Model, loss, batch size and augmentation are those of ``params_file``, on the CPU.
    """
    import torch

    from audioclf.config import load_params
    from audioclf.features.table import FeatureTable, load_split
    from audioclf.training.data import normalisation
    from audioclf.training.steps import build_fit, train_one_epoch

    spec = load_params(params_file).train_spec()
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, device="cpu", amp="off"))
    batch_size = spec.train.batch_size
    table = FeatureTable(work / "features")
    files = sorted({r.path for r in table.rows})
    norm = normalisation(table, files, spec.train.norm)
    full = load_split(table, files, norm)
    data = dataclasses.replace(
        full,
        rows=full.rows[: steps * batch_size],
        y=full.y[: steps * batch_size],
        paths=full.paths[: steps * batch_size],
    )
    warm = dataclasses.replace(
        full, rows=full.rows[-batch_size:], y=full.y[-batch_size:], paths=full.paths[-batch_size:]
    )
    torch.manual_seed(0)
    fit, _ = build_fit(spec, table, data, torch.device("cpu"), None)
    generator = torch.Generator().manual_seed(0)
    train_one_epoch(fit, warm, generator)  # first steps allocate and pick kernels
    _, timing = train_one_epoch(fit, data, generator)
    steps = -(-len(data) // batch_size)
    return {
        "model": spec.model,
        "steps": steps,
        "batch_size": batch_size,
        "step_s": round(timing["epoch_s"] / steps, 4),
        "data_wait_share": round(timing["data_wait_s"] / timing["epoch_s"], 4),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def _rates(files: int, seconds: float, elapsed: float, cpu: float) -> dict:
    return {
        "files": files,
        "audio_s": round(seconds, 1),
        "elapsed_s": round(elapsed, 3),
        "cpu_ms_per_file": round(1000 * cpu / files, 3),
        "files_per_s": round(files / elapsed, 1),
        "audio_s_per_s": round(seconds / elapsed, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }
