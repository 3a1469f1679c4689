"""``audioclf predict`` at archive scale, as whole commands (start-up included), each in a process
of its own whose peak resident memory is read from the kernel (``wait4``):

    python tests/benchmarks/predict_archive.py [--clips 10000] [--shards 2] [--long-files 10]
        [--hours 1] [--silence-hours 10] [--tiny-files 100000]

* ``clips``: ``--clips`` 2-s clips in one run: files per second;
* ``shards``: the same clips as ``--shard k/N`` for k = 1..N, one after the other (an array job's
  tasks on one machine), against the one run; their tables together must hold the same rows;
* ``resume``: the same clips, the command killed (SIGKILL) once half of them are in its ledger,
  then rerun to the end; total wall against the one run, tables equal to its tables;
* ``long``: ``--long-files`` recordings of ``--hours`` each: the real-time factor;
* ``silence``: one ``--silence-hours`` recording of digital silence: peak memory, and its
  ``failed.csv`` row (all-zero audio is refused, so the command exits 1);
* ``tiny``: ``--tiny-files`` recordings of 0.1 s (shorter than a window: padded): files per
  second and peak memory.

The model is the default ``cnn`` with seeded weights (:func:`predict.make_checkpoint`); every
command keeps each window's top label (``--min-score 0``). Synthetic 16-bit WAV at
``--sample-rate``; the long recordings are hard links of one file (decoding reads each anew).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audioclf.cli import command

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import make_checkpoint, write_clips, write_recording  # noqa: E402

log = logging.getLogger("audioclf.benchmarks.predict_archive")
POLL_S = 0.05


def predict_command(inputs: Path, checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "audioclf", "predict", str(inputs)),
        *("--model", str(checkpoint), "--out", str(out), "--min-score", "0", *extra),
    ]


def ledger_lines(out: Path) -> int:
    """Inputs finished (done or failed) in ``out``'s ledger, shard folders included."""
    return sum(max(0, len(p.read_text().splitlines()) - 1) for p in Path(out).rglob("ledger.csv"))


def run(cmd: list[str], log_file: Path, kill_after: int | None = None, out: Path | None = None):
    """Run ``cmd``; with ``kill_after``, SIGKILL it once ``out``'s ledger holds that many inputs.
    Returns wall seconds, peak RSS (MB), exit status and whether it was killed."""
    start = time.perf_counter()
    with open(log_file, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        killed = False
        while kill_after is not None and proc.poll() is None:
            if ledger_lines(out) >= kill_after:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(POLL_S)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "status": os.waitstatus_to_exitcode(status),
        "killed": killed,
    }


def rows(out: Path, table: str) -> list[tuple]:
    """The rows of every ``table`` under ``out`` (shard folders too), sorted."""
    found = []
    for path in Path(out).rglob(table):
        with open(path, newline="") as fh:
            found += [tuple(r) for r in list(csv.reader(fh))[1:]]
    return sorted(found)


def write_silence(path: Path, seconds: float, rate: int) -> Path:
    block = np.zeros(600 * rate, dtype=np.int16)
    with sf.SoundFile(str(path), "w", rate, 1, "PCM_16") as fh:
        for start in range(0, int(seconds * rate), len(block)):
            fh.write(block[: min(len(block), int(seconds * rate) - start)])
    return path


def write_tiny(folder: Path, n: int, rate: int) -> Path:
    audio = (0.1 * np.sin(2 * np.pi * 1000 * np.arange(rate // 10) / rate)).astype(np.float32)
    for i in range(n):
        path = folder / f"{i // 1000:03d}" / f"tiny_{i:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, rate)
    return folder


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clips", type=int, default=10000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--long-files", type=int, default=10)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--silence-hours", type=float, default=10.0)
    ap.add_argument("--tiny-files", type=int, default=100000)
    ap.add_argument("--sample-rate", type=int, default=22050)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    res: dict = {"cores": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory(prefix="audioclf-bench-archive-") as tmp:
        tmp = Path(tmp)
        errors = tmp / "stderr.log"
        ckpt = make_checkpoint(args.params, tmp / "best.pt")
        clips = write_clips(tmp / "clips", args.clips, 2.0, args.sample_rate)

        one = res["clips"] = run(predict_command(clips, ckpt, tmp / "one"), errors)
        one["files_per_s"] = round(args.clips / one["wall_s"], 1)
        log.info("predict, %d clips of 2 s, one run: %s", args.clips, one)

        tasks = [
            run(predict_command(clips, ckpt, tmp / "sh", "--shard", f"{k}/{args.shards}"), errors)
            for k in range(1, args.shards + 1)
        ]
        same = rows(tmp / "sh", "summary.csv") == rows(tmp / "one", "summary.csv")
        res["shards"] = {
            "tasks": tasks,
            "wall_s": round(sum(t["wall_s"] for t in tasks), 2),
            "same_rows": same,
        }
        log.info("predict, the same clips as %d shards in turn: %s", args.shards, res["shards"])

        half = run(predict_command(clips, ckpt, tmp / "re"), errors, args.clips // 2, tmp / "re")
        finished_at_kill = ledger_lines(tmp / "re")
        rest = run(predict_command(clips, ckpt, tmp / "re"), errors)
        same = all(
            rows(tmp / "re", t) == rows(tmp / "one", t) for t in ("summary.csv", "windows.csv")
        )
        res["resume"] = {
            "killed": half,
            "finished_at_kill": finished_at_kill,
            "rerun": rest,
            "wall_s": round(half["wall_s"] + rest["wall_s"], 2),
            "ratio_to_one_run": round((half["wall_s"] + rest["wall_s"]) / one["wall_s"], 2),
            "same_tables": same,
        }
        log.info("predict, killed at half and rerun: %s", res["resume"])

        long_dir = tmp / "long"
        long_dir.mkdir()
        first = write_recording(long_dir / "rec_00.wav", args.hours * 3600, args.sample_rate)
        for i in range(1, args.long_files):
            os.link(first, long_dir / f"rec_{i:02d}.wav")
        r = res["long"] = run(predict_command(long_dir, ckpt, tmp / "long-out"), errors)
        r["real_time_factor"] = round(args.long_files * args.hours * 3600 / r["wall_s"], 1)
        log.info("predict, %d recordings of %g h: %s", args.long_files, args.hours, r)
        for p in long_dir.iterdir():
            p.unlink()

        silent = write_silence(tmp / "silence.wav", args.silence_hours * 3600, args.sample_rate)
        s = res["silence"] = run(predict_command(silent, ckpt, tmp / "silence-out"), errors)
        s["real_time_factor"] = round(args.silence_hours * 3600 / s["wall_s"], 1)
        s["windows"] = len(rows(tmp / "silence-out", "windows.csv"))
        s["failed"] = rows(tmp / "silence-out", "failed.csv")  # all-zero audio is refused
        log.info("predict, %g h of silence: %s", args.silence_hours, s)
        silent.unlink()

        tiny = write_tiny(tmp / "tiny", args.tiny_files, args.sample_rate)
        t = res["tiny"] = run(predict_command(tiny, ckpt, tmp / "tiny-out"), errors)
        t["files_per_s"] = round(args.tiny_files / t["wall_s"], 1)
        t["summary_rows"] = len(rows(tmp / "tiny-out", "summary.csv"))
        t["failed_rows"] = len(rows(tmp / "tiny-out", "failed.csv"))
        log.info("predict, %d files of 0.1 s: %s", args.tiny_files, t)
        if any(x.get("status") for x in (one, *tasks, rest, r, t)):
            log.error("a command failed: %s", errors.read_text()[-2000:])
    return res


if __name__ == "__main__":
    command(main)
