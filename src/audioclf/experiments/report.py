"""A run's phase report, generated from what DVC and MLflow hold.

    python -m audioclf.report cnnv2-focal --against cnn-focal --against baseline
    python -m audioclf.report workspace --target test.macro_f1=0.25 --target buckets.tail.macro_f1=0.3
    python -m audioclf.report my-exp --out reports/my-exp.md

The report the hand-written "Phase N Results" pages held: the configuration and what
changed from the previous phase (the first ``--against``), the per-epoch training
progression with the best epoch marked, train/validation/test metrics, the overfitting
gap, the strongest and weakest classes with their training counts, the comparison with
each ``--against`` run (paired intervals and McNemar, as ``audioclf compare``) and the
success criteria (``--target KEY=VALUE``: met when the value is at least the threshold,
at most for ECE and losses; ``>=``/``<=`` say so explicitly). KEY is a path in
reports/metrics.json (``test.macro_f1``, ``buckets.tail.macro_f1``,
``test_ci.macro_f1.low``) or ``train.<metric>``/``val.<metric>`` at the best epoch.

Run it from the repository root. A run is a DVC experiment, a git revision or
``workspace``. Its files come from DVC; the per-epoch values from its MLflow run (the
latest tagged with its name whose test metrics are the run's own), else from its
reports/curves. The progression figure goes to a folder beside the report
(``<report>_files/``), with an experiment's evaluation figures (the workspace's are
linked where they are); all are linked by relative path.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import logging
import os
import re
import shlex
import sys
from pathlib import Path

from audioclf.cli import command
from audioclf.errors import UserError
from audioclf.evaluation.paired import Comparison
from audioclf.experiments import report_sections as sec
from audioclf.experiments.compare import compare
from audioclf.experiments.criteria import Target, criteria, parse_target, target_value
from audioclf.experiments.report_figures import progression_figure
from audioclf.experiments.runs import RunFiles
from audioclf.experiments.tracked import find_run, history
from audioclf.io import atomic_path

log = logging.getLogger(__name__)


def _curves(files: RunFiles, fold: int) -> list[dict]:
    """One fold's per-epoch rows from the run's reports/curves (the DVC plot)."""
    text = files.read(f"{files.outputs.curves}/fold_{fold}.csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    try:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in r.items()} for r in rows]
    except (TypeError, ValueError):
        raise UserError(
            f"{files.name}: {files.outputs.curves}/fold_{fold}.csv is not numeric"
        ) from None


def load_record(files: RunFiles) -> sec.RunRecord:
    """Everything the report reads of one run: its DVC files, its MLflow run and history."""
    params, metrics = files.params(), files.metrics()
    record = sec.RunRecord(
        name=files.name,
        params=params,
        metrics=metrics,
        train=files.json(files.outputs.train),
        per_class=files.json(files.outputs.per_class),
        train_counts=files.train_counts(),
    )
    record.tracked = find_run(str(params.get("dataset")), files.name, metrics)
    folds = list(record.fold_results())
    if record.tracked is not None and all(n in record.tracked.folds for n in folds):
        record.histories = {n: history(record.tracked.folds[n]) for n in folds}
        record.history_source = f"MLflow run `{record.tracked.run_id}`"
    if not all(record.histories.get(n) for n in folds):
        record.histories = {n: _curves(files, n) for n in folds}
        record.history_source = (
            f"`{files.outputs.curves}/` (no MLflow run of this name holds these test metrics)"
        )
    return record


def _title(p: dict) -> str:
    model, loss_name = p.get("model"), p.get("loss")
    leaky = ", leaky split" if (p.get("split") or {}).get("leaky") else ""
    return f"{model} + {loss_name}{leaky}"


def document(
    r: sec.RunRecord,
    *,
    previous: sec.RunRecord | None,
    against: list[tuple[str, Comparison]],
    targets: list[Target],
    figures: dict[str, str],
    command_line: str,
) -> str:
    """The report as markdown; ``figures``: name -> path relative to the report."""
    tracked = r.tracked
    where = (
        f"its MLflow run `{tracked.run_id}` (experiment `{tracked.experiment}`, commit "
        f"`{tracked.tags.get('git_commit', 'unknown')[:7]}`)"
        if tracked
        else "no MLflow run (none of this name holds these test metrics)"
    )
    lines = [
        f"# `{r.name}`: {_title(r.params)}",
        "",
        f"`{command_line}`, {datetime.datetime.now():%Y-%m-%d %H:%M}. Every number is read from "
        f"the run's files (DVC: params.yaml, reports/) and {where}.",
        "",
        "## Configuration",
        "",
        *sec.configuration(r),
    ]
    if previous is not None:
        lines += ["", f"### Changed from `{previous.name}`", "", *sec.changes(r, previous)]
    results = r.fold_results()
    lines += ["", "## Training progression", ""]
    for n, result in results.items():
        hist, best = r.histories.get(n, []), result.get("best_epoch")
        epochs = (r.params.get("train") or {}).get("epochs")
        stopped = (
            f"stopped early after epoch {hist[-1]['epoch']}"
            if hist and hist[-1]["epoch"] < (epochs or 0)
            else "ran every epoch"
        )
        lines += [
            *([f"### Fold {n}", ""] if len(results) > 1 else []),
            f"Best epoch {best} of {len(hist)} (train.epochs {epochs}; {stopped}), chosen by "
            f"validation macro-F1 {sec.pct(result.get('best_val_macro_f1'))}. Per-epoch values "
            f"from {r.history_source}; train metrics are averaged over each epoch while it trains "
            "(dropout and augmentation on).",
            "",
            *sec.progression(hist, best),
        ]
        if f"progression_{n}" in figures:
            lines += ["", f"![training progression, fold {n}]({figures[f'progression_{n}']})"]
    lines += ["", "## Train, validation and test", "", *sec.splits(r), "", "## Overfitting gap", ""]
    for n, result in results.items():
        lines += [*([f"Fold {n}:", ""] if len(results) > 1 else [])]
        lines += [*sec.gap(r.histories.get(n, []), result.get("best_epoch")), ""]
    strongest, weakest, every = sec.classes(r)
    lines += [
        "## Strong and weak classes",
        "",
        "By test F1 (ties: more training clips first); training clips from reports/split.json.",
        "",
        "Strongest:",
        "",
        *strongest,
        "",
        "Weakest:",
        "",
        *weakest,
        "",
        "<details><summary>Every class, by training clips</summary>",
        "",
        *every,
        "",
        "</details>",
    ]
    for name, caption in (
        ("per_class_f1", "per-class F1"),
        ("confusion_matrix", "confusion matrix"),
        ("reliability", "reliability"),
    ):
        if name in figures:
            lines += ["", f"![{caption}]({figures[name]})"]
    if against:
        lines += ["", "## Comparison", "", *sec.comparisons(r, against)]
    if targets:
        lines += ["", "## Success criteria", "", *criteria(r, targets)]
    return "\n".join(lines) + "\n"


def write_figures(files: RunFiles, r: sec.RunRecord, folder: Path, report: Path) -> dict[str, str]:
    """Draw the progression into ``folder`` (replaced whole) with the run's evaluation figures:
    copied there from an experiment, linked where they are for the workspace (its own files).

    Returns:
        figure name -> path relative to the report.
    """
    out = {}
    rel = Path(os.path.relpath(folder, report.parent))
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for n, result in r.fold_results().items():
            if r.histories.get(n):
                path = tmp / f"progression_fold_{n}.png"
                progression_figure(r.histories[n], result.get("best_epoch"), path)
                out[f"progression_{n}"] = (rel / path.name).as_posix()
        for name, source in (
            ("confusion_matrix", files.outputs.confusion),
            ("per_class_f1", files.outputs.per_class_plot),
            ("reliability", files.outputs.reliability),
        ):
            here = files.root / source
            if files.is_workspace and here.is_file():
                out[name] = Path(os.path.relpath(here, report.parent)).as_posix()
                continue
            try:
                (tmp / here.name).write_bytes(files.read(source, mode="rb"))
            except UserError as err:
                log.warning("report: no %s figure: %s", name, err)
                continue
            out[name] = (rel / here.name).as_posix()
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        prog="audioclf report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("run", metavar="EXP", help="the run (experiment, revision, or workspace)")
    ap.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="EXP",
        help="compare with this run (repeatable; the first is the previous phase)",
    )
    ap.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="success criterion (repeatable), e.g. test.macro_f1=0.25",
    )
    ap.add_argument("--out", help="the report (default: reports/report-<EXP>.md)")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = ap.parse_args(argv)
    targets = [parse_target(t) for t in args.target]
    files = RunFiles(args.run)
    safe = re.sub(r"[^\w.-]", "_", args.run)
    out = Path(args.out or f"reports/report-{safe}.md")
    record = load_record(files)
    for t in targets:
        target_value(record, t.key)  # a bad key fails before anything is written
    others = [RunFiles(name) for name in args.against]
    previous = load_record(others[0]) if others else None
    against = [(o.name, compare(o, files)) for o in others]
    figures = write_figures(files, record, out.with_name(out.stem + "_files"), out)
    words = ["python", "-m", "audioclf.report", *(argv if argv is not None else sys.argv[1:])]
    text = document(
        record,
        previous=previous,
        against=against,
        targets=targets,
        figures=figures,
        command_line=shlex.join(words),
    )
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    log.info("report: wrote %s (figures in %s)", out, out.stem + "_files")
    return {"out": out, "record": record, "comparisons": against, "text": text}


if __name__ == "__main__":
    command(main)
