"""The features stage against a naive per-file librosa loop, side by side.

    python tests/benchmarks/features.py --files 1000 [--seconds 4] [--rounds 3]

Writes ``--files`` synthetic clips (44.1 kHz stereo 16-bit WAV by default, so that decoding,
down-mixing and resampling are all exercised), then alternates, for ``--rounds`` rounds, two
phases, each in a fresh process (its peak memory its own) and each timed after a warm-up on
a few files (numba, torch and librosa set themselves up on first use):

* ``naive``: ``librosa.load(sr=22050)`` + ``melspectrogram`` + ``power_to_db`` per file
  (``naive_librosa.py`` beside this file), with BLAS and OpenMP at one thread: a serial loop
  gains nothing from more, and their idle threads spin on a shared machine;
* ``ours``: :func:`audioclf.features.extract.extract_features` end to end into an empty
  store (decode, resample, front-end, store, the assembled table), then the same call again,
  all store hits.

Prints each round and the medians: audio-seconds per second, their ratio, CPU time per file
and peak memory. The ``ours`` phase runs the audioclf that Python imports, so
``PYTHONPATH=<other checkout>/src`` measures another version with the same clips.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audioclf.config.features import FeaturesConfig
from audioclf.data.manifest import describe, read_manifest, write_manifest

log = logging.getLogger("features-benchmark")
HERE = Path(__file__).resolve().parent
WARMUP_FILES = 8


def generate(folder: Path, n: int, seconds: float, rate: int, channels: int) -> None:
    """``n`` distinct clips (a gliding tone per channel plus noise) as 16-bit WAV, and their manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    entries = []
    for i in range(n):
        f0, sweep = rng.uniform(200, 4000, size=channels), rng.uniform(-0.3, 0.3)
        x = 0.3 * np.sin(2 * np.pi * f0[None] * t[:, None] * (1 + sweep * t[:, None] / seconds))
        x += 0.03 * rng.standard_normal(x.shape)  # (N, channels)
        path = folder / f"clip{i:05d}.wav"
        sf.write(path, x.astype(np.float32), rate, subtype="PCM_16")
        entries.append(describe(path, folder, label=f"c{i % 10}", group=f"g{i // 3}"))
    write_manifest(entries, folder / "manifest.csv")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ours(audio: Path, work: Path, cfg: FeaturesConfig) -> dict:
    """extract_features on every clip into an empty store, after a warm-up; then again (all hits)."""
    from audioclf.features.extract import extract_features

    entries = read_manifest(audio / "manifest.csv")
    warm = entries[:WARMUP_FILES]
    extract_features(warm, audio, cfg, work / "warm", store_dir=work / "warm_store")
    start, cpu = time.perf_counter(), cpu_s()
    report = extract_features(entries, audio, cfg, work / "features", store_dir=work / "store")
    elapsed, cpu = time.perf_counter() - start, cpu_s() - cpu
    start = time.perf_counter()
    again = extract_features(entries, audio, cfg, work / "features", store_dir=work / "store")
    if report["computed"] != len(entries) or again["computed"] != 0:
        raise RuntimeError(f"expected every clip computed once, got {report} then {again}")
    return {
        "files": len(entries),
        "audio_s": sum(e.duration for e in entries),
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "store_hit_s": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def phase(name: str, args: argparse.Namespace, cfg: FeaturesConfig) -> dict:
    """Run one phase in a fresh interpreter and read back its JSON line."""
    audio, work = args.dir / "audio", args.dir / "work"
    env = dict(os.environ)
    if name == "naive":
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        numbers = [args.files, cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels]
        cmd = [str(HERE / "naive_librosa.py"), str(audio), *map(str, numbers)]
    else:
        shutil.rmtree(work, ignore_errors=True)  # an empty store: everything is computed
        cmd = [__file__, "--phase", "ours", "--dir", str(args.dir), "--workers", str(args.workers)]
    os.sync()  # nothing left for the disk to write from the clips or a former phase
    out = subprocess.run(
        [sys.executable, *cmd], capture_output=True, text=True, check=True, env=env
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        **r,
        "audio_s_per_s": r["audio_s"] / r["elapsed_s"],
        "cpu_ms_per_file": 1000 * r["cpu_s"] / r["files"],
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=1000, help="clips to extract")
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length")
    ap.add_argument("--sample-rate", type=int, default=44100, help="rate of the generated clips")
    ap.add_argument("--channels", type=int, default=2, help="channels of the generated clips")
    ap.add_argument("--workers", type=int, default=0, help="features.workers (0: one per core)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating naive/ours rounds")
    ap.add_argument("--only", choices=["naive", "ours"], help="run one side only")
    ap.add_argument("--dir", type=Path, help="work folder, clips kept (default: a temporary one)")
    ap.add_argument("--phase", choices=["ours"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # the default front-end (params.yaml's, for the default model), on the CPU
    cfg = FeaturesConfig(kind="logmel", workers=args.workers, device="cpu")
    if args.phase:
        result = ours(args.dir / "audio", args.dir / "work", cfg)
        sys.stdout.write(json.dumps(result) + "\n")  # read back by the parent process
        return result
    with tempfile.TemporaryDirectory(prefix="audioclf-bench-") as tmp:
        args.dir = args.dir or Path(tmp)
        manifest = args.dir / "audio" / "manifest.csv"
        if not manifest.is_file() or len(read_manifest(manifest)) != args.files:
            generate(args.dir / "audio", args.files, args.seconds, args.sample_rate, args.channels)
        sides = [args.only] if args.only else ["naive", "ours"]
        rounds = {name: [] for name in sides}
        for k in range(args.rounds):
            for name in sides:
                r = phase(name, args, cfg)
                rounds[name].append(r)
                log.info(
                    "round %d %-5s %d files, %.0f audio-s in %.2f s: %.1f audio-s/s, "
                    "%.2f CPU-ms/file, peak RSS %.0f MB",
                    k + 1, name, r["files"], r["audio_s"], r["elapsed_s"], r["audio_s_per_s"],
                    r["cpu_ms_per_file"], r["peak_rss_mb"],
                )  # fmt: skip
    medians = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in rounds.items()
    }
    for name, m in medians.items():
        log.info(
            "median %-5s %.1f audio-s/s, %.2f CPU-ms/file", name, m["audio_s_per_s"],
            m["cpu_ms_per_file"],
        )  # fmt: skip
    if len(medians) == 2:
        ratio = medians["ours"]["audio_s_per_s"] / medians["naive"]["audio_s_per_s"]
        medians["ratio"] = ratio
        log.info(
            "ours / naive (audio-seconds per second): %.2fx on %d cores", ratio, os.cpu_count()
        )
    if "ours" in medians:
        log.info("rerun from the store: %.3f s", medians["ours"]["store_hit_s"])
    return medians


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
