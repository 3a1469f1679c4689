"""``audioclf predict`` on long recordings: real-time factor, peak memory, where the time goes,
and ONNX Runtime against torch on the same windows.

    python tests/benchmarks/predict.py [--clips 10000] [--hours 1] [--memory-minutes 10 120]

The model is the default ``cnn`` (``model_params.cnn`` of params.yaml, seeded weights: speed
does not depend on what it learned) with the default front-end, saved as a checkpoint and
loaded as ``audioclf predict`` loads one. Recordings are synthetic 16-bit WAV (noise and
tones) at ``--sample-rate``, written in blocks. Each measurement runs in a fresh interpreter
so that its peak memory (``ru_maxrss``) is its own, after a warm-up on a 1-minute file
(numba, MKL and torch set themselves up on first use):

* ``clips``: files per second over ``--clips`` 2-s clips (many small files: per-file costs);
* ``rtf``: audio-seconds per wall-second over the ``--hours`` file, and the seconds spent
  decoding (with windowing), in the front-end (reader thread) and in the network (main thread),
  with the network in torch and in ONNX Runtime (``audioclf predict --backend onnxruntime``);
* ``memory``: peak resident memory predicting each ``--memory-minutes`` file;
* ``onnx``: the network (with normalisation) on the same windows' features in batches of
  ``--batch-size``, torch against ONNX Runtime (both on ``--workers`` threads), and their
  largest logit difference.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audioclf.cli import command
from audioclf.config import load_params
from audioclf.config.frontends import resolve_auto
from audioclf.deploy.export import use_onnxruntime
from audioclf.deploy.model import load_model
from audioclf.deploy.predict import predict_files
from audioclf.deploy.predictor import BATCH_SIZE
from audioclf.features.store import frontend_params
from audioclf.models import build_model
from audioclf.models.checkpoint import save_checkpoint
from audioclf.models.inference import channels_last, for_cpu_inference

log = logging.getLogger("audioclf.benchmarks.predict")  # shown by audioclf.cli.setup_logging
N_LABELS = 24  # the default synthetic dataset's species


def write_recording(path: Path, seconds: float, rate: int, seed: int = 0) -> Path:
    """A synthetic recording: pink-ish noise with a tone burst every few seconds, 16-bit, in blocks."""
    rng = np.random.default_rng(seed)
    block = 60 * rate
    with sf.SoundFile(str(path), "w", rate, 1, "PCM_16") as fh:
        for start in range(0, int(seconds * rate), block):
            n = min(block, int(seconds * rate) - start)
            t = (start + np.arange(n)) / rate
            tone = np.sin(2 * np.pi * (2000 + 500 * np.sin(t)) * t) * (np.sin(t) > 0.6)
            fh.write((0.05 * rng.standard_normal(n) + 0.2 * tone).astype(np.float32))
    return path


def make_checkpoint(params_path: Path, out: Path, seed: int = 0) -> Path:
    """The default ``cnn`` with seeded weights and identity normalisation, as a checkpoint."""
    params = load_params(params_path)
    # params.yaml's auto front-end as the default pipeline chose it for its data
    profile = json.loads((params_path.parent / "reports" / "profile.json").read_text())
    features, _ = resolve_auto(params.features, profile)
    torch.manual_seed(seed)
    cfg = params.model_params["cnn"]
    model = build_model("cnn", cfg, n_classes=N_LABELS, input_shape=features.shape[1:])
    save_checkpoint(
        out,
        model=model.eval(),
        model_name="cnn",
        model_config=cfg,
        labels=[f"species_{i:02d}" for i in range(N_LABELS)],
        norm={"kind": "global", "mean": [0.0], "std": [1.0]},
        params={},
        input_shape=features.shape[1:],
        frontend=frontend_params(features),
    )
    return out


def _child(args: argparse.Namespace) -> dict:
    """One measurement in this fresh process: warm up, then predict ``args.file``."""
    model = load_model(args.checkpoint)
    tmp = tempfile.TemporaryDirectory()
    if args.backend == "onnxruntime":
        threads = max(1, (args.workers or len(os.sched_getaffinity(0))) - 1)
        model = use_onnxruntime(model, threads, Path(tmp.name))
    options = _options(args)
    files = sorted(str(p) for p in Path(args.child).rglob("*.wav")) or [args.child]
    with tmp:
        predict_files(model, [str(args.warmup)], Path(tmp.name) / "warm", options)
        result = predict_files(model, files, Path(tmp.name) / "out", options)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**result, "peak_rss_mb": round(rss_mb, 1), "rtf": result["audio_s"] / result["wall_s"]}


def _options(args: argparse.Namespace) -> argparse.Namespace:
    """``audioclf predict``'s settings: every window's top label, the default tables."""
    return argparse.Namespace(
        overlap=0.0,
        batch_size=args.batch_size,
        workers=args.workers,
        min_score=0.0,
        top_k=1,
        raven="per-file",
        audacity=True,
        progress_every=3600.0,
        shard=None,
        device=torch.device("cpu"),
        embeddings=False,
    )


def write_clips(folder: Path, n: int, seconds: float, rate: int) -> Path:
    """``n`` short recordings (tones in noise) in folders of 1000."""
    rng = np.random.default_rng(2)
    t = np.arange(int(seconds * rate)) / rate
    for i in range(n):
        path = folder / f"{i // 1000:03d}" / f"clip_{i:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = 0.2 * np.sin(2 * np.pi * rng.uniform(500, 8000) * t)
        sf.write(path, (audio + 0.05 * rng.standard_normal(len(t))).astype(np.float32), rate)
    return folder


def _measure(args: argparse.Namespace, file: Path, backend: str = "torch") -> dict:
    cmd = [sys.executable, __file__, "--child", str(file)]
    cmd += ["--backend", backend]
    cmd += ["--checkpoint", str(args.checkpoint), "--warmup", str(args.warmup)]
    cmd += ["--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load_before": round(load, 2)}


def onnx_against_torch(checkpoint: Path, windows: int, batch: int, workers: int, tmp: Path) -> dict:
    """ms per window of the network in torch and in ONNX Runtime, on the same features."""
    import onnxruntime

    from audioclf.deploy.export import INPUT, OUTPUT, example_features, export_onnx

    model = load_model(checkpoint)
    export_onnx(model, tmp / "model.onnx")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = workers
    session = onnxruntime.InferenceSession(
        str(tmp / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    torch.set_num_threads(workers)
    features = example_features(model, windows)
    fast = for_cpu_inference(model.classifier)
    batches = [features[i : i + batch] for i in range(0, windows, batch)]
    timed = {}
    for name, run in (
        ("torch", lambda x: model.classifier(x).numpy()),  # as trained and exported
        ("torch_inference", lambda x: fast(channels_last(x)).numpy()),  # as predict runs it
        ("onnxruntime", lambda x: session.run([OUTPUT], {INPUT: x.numpy()})[0]),
    ):
        with torch.inference_mode():
            run(batches[0])  # warm-up
            start = time.perf_counter()
            outs = [run(x) for x in batches]
            timed[name] = (time.perf_counter() - start) / windows * 1e3
            timed[f"{name}_logits"] = np.concatenate(outs)
    reference = timed.pop("torch_logits")
    diffs = {
        k: float(np.abs(reference - timed.pop(f"{k}_logits")).max())
        for k in ("torch_inference", "onnxruntime")
    }
    return {"ms_per_window": timed, "max_abs_logit_diff": diffs, "windows": windows}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--hours", type=float, default=1.0, help="length of the real-time-factor file")
    ap.add_argument("--memory-minutes", type=float, nargs="+", default=[10.0, 120.0])
    ap.add_argument("--sample-rate", type=int, default=22050, help="rate of the recordings")
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    ap.add_argument("--workers", type=int, default=0, help="threads (0: one per core)")
    ap.add_argument("--onnx-windows", type=int, default=512)
    ap.add_argument(
        "--clips", type=int, default=10000, help="2-s clips of the many-small-files measurement"
    )
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        result = _child(args)
        sys.stdout.write(json.dumps(result) + "\n")  # read back by the parent, not a log line
        return result
    workers = args.workers or len(os.sched_getaffinity(0))
    results: dict = {"cores": len(os.sched_getaffinity(0)), "workers": workers}
    with tempfile.TemporaryDirectory(prefix="audioclf-bench-predict-") as tmp:
        tmp = Path(tmp)
        args.checkpoint = make_checkpoint(args.params, tmp / "best.pt")
        args.warmup = write_recording(tmp / "warmup.wav", 60, args.sample_rate, seed=1)
        long_file = write_recording(tmp / "long.wav", args.hours * 3600, args.sample_rate)
        clips = write_clips(tmp / "clips", args.clips, 2.0, args.sample_rate)
        c = results["clips"] = _measure(args, clips)
        log.info(
            "predict, %d clips of 2 s: %.1f s wall, %.0f files/s; decoding %.2f s, front-end "
            "%.2f s, network %.2f s; peak RSS %.0f MB (load before %.2f)",
            c["predicted"], c["wall_s"], c["predicted"] / c["wall_s"], c["timings"]["decode"],
            c["timings"]["frontend"], c["timings"]["network"], c["peak_rss_mb"], c["load_before"],
        )  # fmt: skip
        results["rtf"] = {}
        for backend in ("torch", "onnxruntime"):
            r = results["rtf"][backend] = _measure(args, long_file, backend)
            t = r["timings"]
            log.info(
                "predict (%s), %.1f h at %d Hz: %.1f s wall, %.0fx real time (%d windows); "
                "decoding %.2f s, front-end %.2f s (reader thread), network %.2f s (main thread); "
                "peak RSS %.0f MB (load before %.2f)",
                backend, args.hours, args.sample_rate, r["wall_s"], r["rtf"], r["windows"],
                t["decode"], t["frontend"], t["network"], r["peak_rss_mb"], r["load_before"],
            )  # fmt: skip
        long_file.unlink()
        results["memory"] = {}
        for minutes in args.memory_minutes:
            path = write_recording(tmp / f"m{minutes:g}.wav", minutes * 60, args.sample_rate)
            m = results["memory"][f"{minutes:g} min"] = _measure(args, path)
            path.unlink()
            log.info(
                "predict, %g min: peak RSS %.0f MB, %.0fx real time",
                minutes,
                m["peak_rss_mb"],
                m["rtf"],
            )
        o = results["onnx"] = onnx_against_torch(
            args.checkpoint, args.onnx_windows, args.batch_size, workers, tmp
        )
        log.info(
            "network on %d windows, batches of %d, %d threads: torch as trained %.2f ms/window, "
            "as predict runs it (conv+batch norm fused, channels-last) %.2f, ONNX Runtime %.2f; "
            "max |logit difference| against the first: %.2g and %.2g",
            o["windows"], args.batch_size, workers, *o["ms_per_window"].values(),
            *o["max_abs_logit_diff"].values(),
        )  # fmt: skip
    return results


if __name__ == "__main__":
    command(main)
