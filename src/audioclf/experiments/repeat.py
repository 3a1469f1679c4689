"""Repeat one experiment over N seeds and report mean ± std of every test metric.

    python -m audioclf.experiments.repeat -n 3 -S model=cnn_v2      # train.seed s, s+1, s+2: same data and split
    python -m audioclf.experiments.repeat -n 5 -S loss=focal --name focal --out reports/focal.md
    python -m audioclf.experiments.repeat -n 3 --vary split         # seed (data, split) and train.seed together

The runs are named DVC experiments (``<name>-s<seed>``) run through the queue, like the
phases of :mod:`audioclf.experiments.ladder`; the table is the ladder's, with one row.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

import yaml

from audioclf.cli import command
from audioclf.config.evaluation import EvaluateConfig
from audioclf.config.schema import build
from audioclf.experiments import dvc_exps
from audioclf.experiments.ladder import VARY, execute, plan, summarise, write
from audioclf.experiments.phase_report import describe_seeds, report
from audioclf.experiments.phases import Phase

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", "--seeds", type=int, default=3, help="runs, with seeds s, s+1, ...")
    ap.add_argument(
        "-S",
        "--set-param",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override, as for dvc exp run (repeatable)",
    )
    ap.add_argument("--name", default="repeat", help="experiment names: <name>-s<seed>")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument(
        "--vary",
        choices=VARY,
        default="train",
        help="train: vary train.seed only (same data and split; default); split: seed too",
    )
    ap.add_argument("--out", help="also write the table here (markdown)")
    ap.add_argument(
        "--force", action="store_true", help="replace experiments that already have these names"
    )
    ap.add_argument("--dry-run", action="store_true", help="print the runs; queue nothing")
    args = ap.parse_args(argv)
    if args.seeds < 2:
        ap.error(f"-n must be >= 2 to give a spread, got {args.seeds}")
    raw = yaml.safe_load(Path(args.params).read_text())
    phase = Phase(args.name, " ".join(args.overrides) or "workspace params", tuple(args.overrides))
    try:
        planned = plan(raw, [phase], seeds=args.seeds, vary=args.vary)
    except ValueError as err:
        ap.error(str(err))
    if planned[0].reason:
        ap.error(f"cannot run {args.overrides}: {planned[0].reason}")
    for name, overrides in planned[0].runs.items():
        log.info("%s", shlex.join(["dvc", *dvc_exps.queue_command(name, overrides)]))
    if args.dry_run:
        return {"planned": planned}
    results = summarise(planned, execute(planned, Path.cwd(), force=args.force))
    command = shlex.join(
        [
            "python",
            "-m",
            "audioclf.experiments.repeat",
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    cfg = build(EvaluateConfig, raw.get("evaluate"), "evaluate")
    text = report(
        results,
        [(phase.name, phase.overrides, list(planned[0].runs))],
        raw,
        command=command,
        seeds=describe_seeds(sorted(s for s in planned[0].seeds.values() if s), args.vary),
        baseline=args.name,
        level=cfg.ci_level,
        n_boot=cfg.bootstrap,
    )
    log.info("%s", text)
    if args.out:
        write(text, args.out)
    return {"planned": planned, "results": results}


if __name__ == "__main__":
    command(main)
