"""Two runs compared on their test files, each metric's difference with its interval.

    audioclf compare baseline wce-sqrt              # B (wce-sqrt) against A (baseline)
    audioclf compare workspace my-exp --out reports/my-exp-vs-workspace.md
    audioclf compare baseline leaky --bootstrap 2000 --level 0.99

A run is a DVC experiment (``dvc exp show``), a git revision, or ``workspace``; its
per-file test probabilities (``reports/probabilities.csv``) are read from it. When both
scored the same test files the comparison is paired: a bootstrap over the files that
scores both runs on every resample, and McNemar's exact test on the files one run gets
right and the other wrong. Otherwise (a leaky split against a grouped one, another
seed of the data) each run's files are resampled on their own. A difference is marked
significant only when its interval excludes zero. Resamples, level and seed default to
run A's ``evaluate.bootstrap``, ``evaluate.ci_level`` and ``seed``.

The metric columns and number formats here are those of every report (``audioclf report``,
``reports/phases.md``), so a metric has one name and one format everywhere.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

from audioclf.cli import parser
from audioclf.config.evaluation import EvaluateConfig
from audioclf.config.schema import build, coerce
from audioclf.evaluation.paired import Comparison, Difference, compare_runs
from audioclf.experiments.runs import RunFiles
from audioclf.io import atomic_path

log = logging.getLogger(__name__)

# (column, path in reports/metrics.json); ECE is the one where lower is better
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("accuracy", ("test", "accuracy")),
    ("UAR", ("test", "balanced_accuracy")),
    ("macro-F1", ("test", "macro_f1")),
    ("weighted-F1", ("test", "weighted_f1")),
    ("mAP", ("test", "macro_map")),
    ("ROC-AUC", ("test", "macro_auc")),
    ("top-5", ("test", "top5_accuracy")),
    ("ECE ↓", ("test", "ece")),
    ("head F1", ("buckets", "head", "macro_f1")),
    ("mid F1", ("buckets", "mid", "macro_f1")),
    ("tail F1", ("buckets", "tail", "macro_f1")),
)
# the columns of the comparison tables (the reference reports' headline numbers)
COMPARED = ("accuracy", "UAR", "macro-F1", "mAP", "tail F1")


def headline_key(path: tuple[str, ...]) -> str:
    """The key of a metrics.json path among the bootstrap's metrics.

    >>> headline_key(("test", "macro_f1")), headline_key(("buckets", "tail", "macro_f1"))
    ('macro_f1', 'tail_macro_f1')
    """
    return path[1] if path[0] == "test" else f"{path[1]}_{path[2]}"


def compared_keys() -> list[tuple[str, str]]:
    """(column, bootstrap key) of the :data:`COMPARED` columns."""
    paths = dict(METRICS)
    return [(column, headline_key(paths[column])) for column in COMPARED]


def lookup(node: Any, path: tuple[str, ...] | list[str]) -> Any:
    """The value at ``path`` in nested dicts, or None.

    >>> lookup({"test": {"accuracy": 0.5}}, ("test", "accuracy")), lookup({}, ("test", "x"))
    (0.5, None)
    """
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def metric_values(metrics: dict) -> dict[str, float]:
    """The :data:`METRICS` columns present in one metrics.json (a bucket without test items is not).

    >>> metric_values({"test": {"accuracy": 0.5}, "buckets": {"tail": {"classes": 0}}})
    {'accuracy': 0.5}
    """
    values = {column: lookup(metrics, path) for column, path in METRICS}
    return {
        c: float(v)
        for c, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def points(x: float) -> str:
    """A difference of fractions in percentage points, signed.

    >>> points(0.052), points(-0.0684), points(0.0)
    ('+5.2', '-6.8', '+0.0')
    """
    return f"{100 * x:+.1f}"


def interval_cell(d: Difference) -> str:
    """``+3.4 [-1.4, +8.2]`` in points; bold when the interval excludes zero.

    >>> interval_cell(Difference(.5, .56, .06, .01, .11))
    '**+6.0 [+1.0, +11.0]**'
    """
    text = f"{points(d.diff)} [{points(d.low)}, {points(d.high)}]"
    return f"**{text}**" if d.significant else text


def markdown_table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A markdown table; ``align`` holds one letter per column, ``l`` (left) or ``r`` (right).

    >>> markdown_table(["a", "b"], [["x", "1"]], "lr")
    ['| a | b |', '|---|---:|', '| x | 1 |']
    """
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    lines = ["| " + " | ".join(row) + " |" for row in [header, *rows]]
    return [lines[0], rule, *lines[1:]]


def mcnemar_text(c: Comparison) -> str:
    """``9 / 14, p = 0.405`` (files only A / only B gets right), or ``–`` if unpaired."""
    if c.mcnemar is None:
        return "–"
    return f"{c.mcnemar.only_a} / {c.mcnemar.only_b}, p = {c.mcnemar.p:.3g}"


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
    what = "the files" if c.groups_a is None else f"their {c.groups_a} groups (each with its files)"
    if c.paired:
        return (
            f"Paired on the same {c.n_a} test files: {level} percentile interval of the difference "
            f"over {c.n_boot} bootstrap resamples of {what} (both runs scored on each); McNemar's "
            "exact test on the files only one run classifies right."
        )
    return (
        f"Unpaired (different test files: {c.n_a} and {c.n_b}): {level} percentile interval of the "
        f"difference over {c.n_boot} resamples, each run's files resampled on their own; McNemar's "
        "test needs the same files and does not apply."
    )


def table(c: Comparison, name_a: str, name_b: str) -> list[str]:
    """The comparison as markdown: one row per metric both runs have."""
    header = ["metric", f"`{name_a}`", f"`{name_b}`", f"difference [{100 * c.level:g} % interval]"]
    rows = [
        [column, f"{100 * d.a:.1f}", f"{100 * d.b:.1f}", interval_cell(d)]
        for column, path in METRICS
        if (d := c.differences.get(headline_key(path))) is not None
    ]
    return markdown_table(header, rows, "lrrr")


def render(c: Comparison, name_a: str, name_b: str, command_line: str) -> str:
    """The comparison as a markdown document."""
    significant = [
        column
        for column, path in METRICS
        if (d := c.differences.get(headline_key(path))) is not None and d.significant
    ]
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
        "Significant: " + (", ".join(significant) or "none") + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> dict:
    ap = parser(__doc__, prog="audioclf compare", params=False)
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
    args = ap.parse_args(argv)
    if args.bootstrap is not None and args.bootstrap < 1:
        ap.error(f"--bootstrap must be >= 1, got {args.bootstrap}")
    if args.level is not None and not 0 < args.level < 1:
        ap.error(f"--level must be in (0, 1), got {args.level}")
    root = Path(args.repo).resolve()
    result = compare(
        RunFiles(args.a, root), RunFiles(args.b, root), n_boot=args.bootstrap, level=args.level
    )
    text = render(result, args.a, args.b, shlex.join(["audioclf", "compare", *argv]))
    log.info("%s", text)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
        log.info("compare: wrote %s", args.out)
    return {"comparison": result, "text": text}
