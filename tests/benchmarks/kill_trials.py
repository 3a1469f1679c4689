"""Kill every stage at random moments and check that a rerun gives what an uninterrupted run gives.

    python tests/benchmarks/kill_trials.py --work /tmp/kills --params small.yaml --trials 5     # every stage
    python tests/benchmarks/kill_trials.py --work /tmp/kills --params small.yaml --stages features,train

In a throw-away copy of the repository (``--work``; tracked files only, with
``--params`` as its params.yaml: a small dataset keeps it quick), the pipeline first runs once uninterrupted and
the outputs of each stage are hashed. Then, for each stage and trial, the stage's
command (from ``dvc.yaml``) is started, sent SIGKILL after a random fraction of its
uninterrupted duration, and run again to the end; the trial passes if the rerun's
outputs hash to the reference. Prints one line per trial and a summary; exit status 1
if any trial differs. Timing-dependent outputs (MLflow runs) are not compared.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

from audioclf.cli import command

log = logging.getLogger("audioclf.benchmarks.kill_trials")  # shown by audioclf.cli.setup_logging
REPO = Path(__file__).resolve().parents[3]
# outputs compared per stage (store hits and MLflow runs are left out: they depend on history)
OUTPUTS = {
    "source": ["data/source.json"],
    "download": ["data/raw"],
    "split": ["data/split", "data/test", "reports/split.json"],
    "audit": ["reports/leakage.json"],
    "features": ["data/features", "reports/features.json"],
    "train": [
        "reports/train.json",
        "reports/curves",
    ],  # checkpoints name their MLflow run: not compared
    "evaluate": ["reports/metrics.json", "reports/per_class.json", "reports/predictions.csv"],
}


def digest(root: Path, paths: list[str]) -> str:
    """One hash over the files under ``paths`` (names and bytes, in order)."""
    h = hashlib.sha256()
    for rel in paths:
        top = root / rel
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for f in files:
            if f.exists():
                h.update(f.relative_to(root).as_posix().encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def copy_repo(work: Path, params: dict) -> Path:
    """The tracked files of this repository in ``work``, with ``params`` as params.yaml."""
    shutil.rmtree(work, ignore_errors=True)
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        if (REPO / rel).is_file() and not rel.startswith("reports/"):
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, work / rel)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


def stage_command(root: Path, stage: str) -> str:
    return " ".join(yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage]["cmd"].split())


def run_stage(
    root: Path, stage: str, env: dict, kill_after: float | None = None
) -> tuple[float, bool]:
    """Run a stage's command; with ``kill_after``, SIGKILL it then. Returns (seconds, was killed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        stage_command(root, stage),
        shell=True,
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return time.perf_counter() - start, True
    if proc.returncode != 0:
        raise RuntimeError(f"{stage} failed: {proc.stderr.read().decode()[-2000:]}")
    return time.perf_counter() - start, False


def trials(root: Path, stages: list[str], n: int, seed: int) -> list[dict]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))},
        "PYTHONPATH": str(root / "src"),
    }
    durations, reference = {}, {}
    for stage in OUTPUTS:  # the whole pipeline once, uninterrupted
        durations[stage], _ = run_stage(root, stage, env)
        reference[stage] = digest(root, OUTPUTS[stage])
    rng, results = random.Random(seed), []
    for stage in stages:
        for k in range(n):
            at = rng.uniform(0.05, 0.95) * durations[stage]
            _, killed = run_stage(root, stage, env, kill_after=at)
            run_stage(root, stage, env)
            same = digest(root, OUTPUTS[stage]) == reference[stage]
            results.append(
                {
                    "stage": stage,
                    "trial": k,
                    "kill_at_s": round(at, 2),
                    "killed": killed,
                    "identical": same,
                }
            )
            log.info(
                "%-9s trial %d: SIGKILL at %.2f s of %.2f s%s; rerun %s",
                stage,
                k,
                at,
                durations[stage],
                "" if killed else " (it had finished)",
                "identical" if same else "DIFFERS",
            )
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--work", type=Path, required=True, help="throw-away folder for the copy")
    ap.add_argument(
        "--params", type=Path, required=True, help="the params.yaml to run the copy with"
    )
    ap.add_argument("--stages", default=",".join(OUTPUTS), help="comma-separated stages")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    root = copy_repo(args.work, yaml.safe_load(args.params.read_text()))
    results = trials(root, args.stages.split(","), args.trials, args.seed)
    bad = [r for r in results if not r["identical"]]
    killed = sum(r["killed"] for r in results)
    log.info(
        "%d trials (%d killed mid-run), %d identical after the rerun, %d differ",
        len(results),
        killed,
        len(results) - len(bad),
        len(bad),
    )
    return 1 if bad else 0


if __name__ == "__main__":
    command(main)
