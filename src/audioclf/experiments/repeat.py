"""Repeat one experiment over N seeds and report mean ± std of every test metric.

    audioclf repeat -n 3 -S model=cnn_v2      # train.seed s, s+1, s+2: same data and split
    audioclf repeat -n 5 -S loss=focal --name focal --out reports/focal.md
    audioclf repeat -n 3 --vary split         # seed (data, split) and train.seed together

The runs are named DVC experiments (``<name>-s<seed>``) run through the queue, like the
phases of ``audioclf ladder``; the table is the ladder's, with one row.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import yaml

from audioclf.cli import parser
from audioclf.experiments.ladder import VARY, Dvc, Phase, log_plan, plan, run_phases
from audioclf.io import atomic_path, repo_root

log = logging.getLogger(__name__)


def main(argv: list[str]) -> dict:
    ap = parser(__doc__, prog="audioclf repeat")
    add = ap.add_argument
    add("-n", "--seeds", type=int, default=3, help="runs, with seeds s, s+1, ...")
    add(
        "-S",
        "--set-param",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params override, as for dvc exp run (repeatable)",
    )
    add("--name", default="repeat", help="experiment names: <name>-s<seed>")
    add("--vary", choices=VARY, default="train", help="train: train.seed only; split: seed too")
    add("--out", help="also write the table here (markdown)")
    add("--force", action="store_true", help="replace experiments that have these names")
    add("--dry-run", action="store_true", help="print the runs; queue nothing")
    args = ap.parse_args(argv)
    if args.seeds < 2:
        ap.error(f"-n must be >= 2 to give a spread, got {args.seeds}")
    root = repo_root()
    raw = yaml.safe_load(Path(args.params).read_text())
    phase = Phase(args.name, " ".join(args.overrides) or "workspace params", tuple(args.overrides))
    try:
        planned = plan(raw, [phase], root=root, seeds=args.seeds, vary=args.vary)
    except ValueError as err:
        ap.error(str(err))
    if planned[0].reason:
        ap.error(f"cannot run {args.overrides}: {planned[0].reason}")
    log_plan(planned)
    if args.dry_run:
        return {"planned": planned}
    results, text = run_phases(
        planned,
        raw,
        Dvc(root),
        command=shlex.join(["audioclf", "repeat", *argv]),
        vary=args.vary,
        baseline=args.name,
        force=args.force,
    )
    log.info("%s", text)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
    return {"planned": planned, "results": results, "text": text}
