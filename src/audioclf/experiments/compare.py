"""Two runs compared on their test files, each metric's difference with its interval.

    python -m audioclf.compare baseline wce-sqrt              # B (wce-sqrt) against A (baseline)
    python -m audioclf.compare workspace my-exp --out reports/my-exp-vs-workspace.md
    python -m audioclf.compare baseline leaky --bootstrap 2000 --level 0.99

A run is a DVC experiment (``dvc exp show``), a git revision, or ``workspace``; its
per-file test probabilities (``reports/probabilities.csv``) are read from it. When both
scored the same test files the comparison is paired: a bootstrap over the files that
scores both runs on every resample, and McNemar's exact test on the files one run gets
right and the other wrong. Otherwise (a leaky split against a grouped one, another
seed of the data) each run's files are resampled on their own. A difference is marked
significant only when its interval excludes zero. Resamples, level and seed default to
run A's ``evaluate.bootstrap``, ``evaluate.ci_level`` and ``seed``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from audioclf.cli import command
from audioclf.config.evaluation import EvaluateConfig
from audioclf.config.schema import build, coerce
from audioclf.evaluation.paired import Comparison, compare_runs
from audioclf.experiments.columns import METRICS, headline_key, interval_cell
from audioclf.experiments.runs import RunFiles
from audioclf.io import atomic_path

log = logging.getLogger(__name__)


def compare(
    a: RunFiles, b: RunFiles, *, n_boot: int | None = None, level: float | None = None
) -> Comparison:
    """Run B against run A on their test files; statistics settings from A's params by default."""
    raw = a.params()
    cfg = build(EvaluateConfig, raw.get("evaluate"), "evaluate")
    pa, pb = a.predictions(), b.predictions()
    return compare_runs(
        pa,
        pb,
        n_boot=cfg.bootstrap if n_boot is None else n_boot,
        level=cfg.ci_level if level is None else level,
        seed=coerce(int, raw.get("seed", 0), "seed"),
        ece_bins=cfg.ece_bins,
        bucket_of_a=a.bucket_of(pa.labels),
        bucket_of_b=b.bucket_of(pb.labels),
    )


def method(c: Comparison) -> str:
    """One sentence saying how the intervals and the test were computed."""
    level = f"{100 * c.level:g} %"
    if c.paired:
        return (
            f"Paired on the same {c.n_a} test files: {level} percentile interval of the difference "
            f"over {c.n_boot} bootstrap resamples of the files (both runs scored on each); McNemar's "
            "exact test on the files only one run classifies right."
        )
    return (
        f"Unpaired (different test files: {c.n_a} and {c.n_b}): {level} percentile interval of the "
        f"difference over {c.n_boot} resamples, each run's files resampled on their own; McNemar's "
        "test needs the same files and does not apply."
    )


def mcnemar_text(c: Comparison) -> str:
    """``b = 9, c = 14, p = 0.405`` (files only A / only B gets right), or ``–`` if unpaired."""
    if c.mcnemar is None:
        return "–"
    m = c.mcnemar
    return f"{m.only_a} / {m.only_b}, p = {m.p:.3g}"


def table(c: Comparison, name_a: str, name_b: str) -> list[str]:
    """The comparison as markdown: one row per metric both runs have."""
    lines = [
        f"| metric | `{name_a}` | `{name_b}` | difference [{100 * c.level:g} % interval] |",
        "|---|---:|---:|---:|",
    ]
    for column, path in METRICS:
        d = c.differences.get(headline_key(path))
        if d is not None:
            lines.append(f"| {column} | {100 * d.a:.1f} | {100 * d.b:.1f} | {interval_cell(d)} |")
    return lines


def render(c: Comparison, name_a: str, name_b: str, command_line: str) -> str:
    """The comparison as a markdown document."""
    verdict = [column for column, path in METRICS if _significant(c, path)]
    lines = [
        f"# `{name_b}` against `{name_a}`",
        "",
        f"`{command_line}`",
        "",
        method(c) + " Metrics in percent, differences in points (B − A); bold: the interval "
        "excludes zero. ECE: lower is better.",
        "",
        *table(c, name_a, name_b),
        "",
        f"McNemar (files only `{name_a}` / only `{name_b}` classifies right): {mcnemar_text(c)}",
        "",
        "Significant: " + (", ".join(verdict) if verdict else "none") + ".",
    ]
    return "\n".join(lines) + "\n"


def _significant(c: Comparison, path: tuple[str, ...]) -> bool:
    d = c.differences.get(headline_key(path))
    return d is not None and d.significant


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        prog="audioclf compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "a", metavar="EXP_A", help="the reference run (experiment, revision, workspace)"
    )
    ap.add_argument("b", metavar="EXP_B", help="the run compared with it")
    ap.add_argument("--bootstrap", type=int, help="resamples (default: A's evaluate.bootstrap)")
    ap.add_argument(
        "--level", type=float, help="interval coverage (default: A's evaluate.ci_level)"
    )
    ap.add_argument("--repo", default=".", help="the repository (default: the working directory)")
    ap.add_argument("--out", help="also write the comparison here (markdown)")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = ap.parse_args(argv)
    if args.bootstrap is not None and args.bootstrap < 1:
        ap.error(f"--bootstrap must be >= 1, got {args.bootstrap}")
    if args.level is not None and not 0 < args.level < 1:
        ap.error(f"--level must be in (0, 1), got {args.level}")
    a, b = RunFiles(args.a, args.repo), RunFiles(args.b, args.repo)
    result = compare(a, b, n_boot=args.bootstrap, level=args.level)
    words = ["python", "-m", "audioclf.compare", *(argv if argv is not None else sys.argv[1:])]
    text = render(result, args.a, args.b, shlex.join(words))
    log.info("%s", text)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
        log.info("compare: wrote %s", args.out)
    return {"comparison": result, "text": text}


if __name__ == "__main__":
    command(main)
