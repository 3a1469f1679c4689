"""A run's phase report, generated from what DVC and MLflow hold.

    audioclf report cnnv2-focal --against cnn-focal --against baseline
    audioclf report workspace --target test.macro_f1=0.25 --target buckets.tail.macro_f1=0.3
    audioclf report my-exp --out reports/my-exp.md

What the hand-written "Phase N Results" pages held: the configuration and what changed from
the previous phase (the first ``--against``), the per-epoch progression with the best epoch
marked, train/validation/test metrics, the overfitting gap, the strongest and weakest classes
with their training counts, the comparison with each ``--against`` run (as ``audioclf
compare``) and the success criteria (``--target KEY=VALUE``: met when the value is at least the
threshold, at most for ECE and losses; ``>=``/``<=`` say so explicitly). KEY is a path in
reports/metrics.json (``test.macro_f1``, ``test_ci.macro_f1.low``) or ``train.<metric>``/
``val.<metric>`` at the best epoch (the mean over folds for cross-validation).

Run it from the repository root. A run is a DVC experiment, a git revision or ``workspace``;
its per-epoch values come from its MLflow run, else from its reports/curves. The figures go to
``<report>_files/`` beside the report (the workspace's own are linked where they are). Every
number is formatted from the run's files, never typed.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audioclf.cli import parser
from audioclf.config.schema import flatten
from audioclf.errors import UserError
from audioclf.evaluation.paired import Comparison
from audioclf.experiments.compare import (
    METRICS,
    compare,
    compared_keys,
    headline_key,
    interval_cell,
    lookup,
    mcnemar_text,
    method,
    points,
    table,
)
from audioclf.experiments.runs import FIGURES, RunFiles, RunRecord, load_record
from audioclf.io import atomic_path

log = logging.getLogger(__name__)

LOWER_IS_BETTER = ("ece", "loss")


class TargetError(UserError, ValueError):
    """A ``--target`` that is malformed or names no number of the run."""


@dataclass(frozen=True)
class Target:
    """A success criterion: ``key`` (a number of the run) ``op`` (``>=`` or ``<=``) ``threshold``."""

    key: str
    op: str
    threshold: float


def parse_target(text: str) -> Target:
    """``test.macro_f1=0.25`` (at least; at most for ECE and losses), or with ``>=``/``<=``.

    >>> parse_target("test.macro_f1=0.25"), parse_target("test.ece=0.1").op
    (Target(key='test.macro_f1', op='>=', threshold=0.25), '<=')
    """
    m = re.fullmatch(r"\s*([\w.]+)\s*(>=|<=|=)\s*(\S+)\s*", text)
    try:
        threshold = float(m.group(3)) if m else None
    except ValueError:
        threshold = None
    if m is None or threshold is None:
        raise TargetError(
            f"--target {text!r}: expected KEY=NUMBER (or KEY>=NUMBER, KEY<=NUMBER), "
            "e.g. test.macro_f1=0.25"
        )
    key, op = m.group(1), m.group(2)
    if op == "=":
        op = "<=" if key.rsplit(".", 1)[-1].endswith(LOWER_IS_BETTER) else ">="
    return Target(key, op, threshold)


def _at_epoch(history: list[dict], epoch: int) -> dict:
    return next((h for h in history if h["epoch"] == epoch), {})


def target_value(r: RunRecord, key: str) -> float:
    """The run's number named ``key``: a path in metrics.json, or ``train.``/``val.`` at the
    best epoch (the mean over folds for cross-validation)."""
    split, _, metric = key.partition(".")
    if split in ("train", "val") and metric:
        values = [
            _at_epoch(r.histories.get(n, []), res.get("best_epoch")).get(f"{split}_{metric}")
            for n, res in r.fold_results().items()
        ]
        if values and all(isinstance(v, float) for v in values):
            return sum(values) / len(values)
    node = lookup(r.metrics, key.split("."))
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return float(node)
    raise TargetError(
        f"--target {key}: {r.name} has no number of that name; use a path in reports/metrics.json "
        "(test.macro_f1, buckets.tail.macro_f1, test_ci.accuracy.low) or train./val. with "
        "loss, accuracy or macro_f1"
    )


def value(v: Any) -> str:
    """A params value as params.yaml would hold it.

    >>> value(None), value([2, 5]), value(0.001), value("cnn")
    ('null', '[2, 5]', '0.001', 'cnn')
    """
    return v if isinstance(v, str) else json.dumps(v)


def count(x: float | None) -> str:
    """A count of clips: whole numbers without a decimal (cross-validation means keep one).

    >>> count(140.0), count(12.5), count(None)
    ('140', '12.5', '?')
    """
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def loss(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def _settings(mapping: dict, skip: tuple[str, ...] = ()) -> str:
    return ", ".join(f"{k} {value(v)}" for k, v in flatten(mapping).items() if k not in skip)


def configuration(r: RunRecord) -> list[str]:
    """The configuration: model, loss, training, augmentation, data and split, features."""
    p = r.params
    model, loss_name, seed = p.get("model"), p.get("loss"), p.get("seed")
    train = p.get("train") or {}
    augment = {k: v for k, v in (p.get("augment") or {}).items() if (v or {}).get("p", 0) > 0}
    split = p.get("split") or {}
    size = r.train.get("n_parameters")
    rows = [
        ("dataset", f"`{p.get('dataset')}`, {r.metrics.get('n', '?')} test files"),
        (
            "model",
            f"`{model}`: {_settings((p.get('model_params') or {}).get(model) or {})}"
            + (f"; {size:,} parameters" if isinstance(size, int) else ""),
        ),
        ("loss", f"`{loss_name}`: {_settings((p.get('loss_params') or {}).get(loss_name) or {})}"),
        ("training", _settings(train, skip=("seed",))),
        (
            "augmentation",
            "; ".join(f"{k}: {_settings(v)}" for k, v in augment.items()) or "none (every p is 0)",
        ),
        ("split", _settings(split) + ("; leaky split" if split.get("leaky") else "")),
        (
            "seeds",
            f"seed {value(seed)} (data, split); train.seed {value(train.get('seed'))}"
            + (f" (follows seed: {value(seed)})" if train.get("seed") is None else ""),
        ),
        ("features", _settings(p.get("features") or {}, skip=("store_dir", "workers", "device"))),
    ]
    return ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]


def _relevant(params: dict) -> dict[str, Any]:
    """Flattened params without other models' and losses' settings (they shape nothing)."""
    keep = (f"model_params.{params.get('model')}.", f"loss_params.{params.get('loss')}.")
    return {
        k: v
        for k, v in flatten(params).items()
        if not k.startswith(("model_params.", "loss_params.")) or k.startswith(keep)
    }


def changes(r: RunRecord, other: RunRecord) -> list[str]:
    """The params that differ from ``other``'s (the previous phase)."""
    mine, theirs = _relevant(r.params), _relevant(other.params)
    keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k, ...) != theirs.get(k, ...))
    if not keys:
        return [f"Nothing: the params equal `{other.name}`'s."]
    lines = [f"| param | `{other.name}` | `{r.name}` |", "|---|---|---|"]
    for k in keys:
        before = value(theirs[k]) if k in theirs else "–"
        after = value(mine[k]) if k in mine else "–"
        lines.append(f"| `{k}` | {before} | {after} |")
    return lines


def progression(history: list[dict], best: int) -> list[str]:
    """The per-epoch table, the best epoch (by validation macro-F1) in bold."""
    lines = [
        "| epoch | train loss | val loss | train acc | val acc | train macro-F1 | val macro-F1 | lr |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h in history:
        cells = [loss(h.get("train_loss")), loss(h.get("val_loss"))]
        cells += [pct(h.get(k)) for k in ("train_accuracy", "val_accuracy")]
        cells += [pct(h.get(k)) for k in ("train_macro_f1", "val_macro_f1")]
        cells.append(f"{h['lr']:.3g}" if "lr" in h else "–")
        epoch = str(h["epoch"])
        if h["epoch"] == best:
            cells = [f"**{c}**" for c in cells]
            epoch = f"**{epoch} (best)**"
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return lines


def splits(r: RunRecord) -> list[str]:
    """Train and validation at each fold's best epoch, then the test metrics with intervals."""
    ci, test = r.metrics.get("test_ci") or {}, r.metrics.get("test") or {}
    results = r.fold_results()
    lines = ["| split | loss | accuracy | macro-F1 |", "|---|---:|---:|---:|"]
    for n, result in results.items():
        row = _at_epoch(r.histories.get(n, []), result.get("best_epoch"))
        fold = f", fold {n}" if len(results) > 1 else ""
        for split, label in (("train", "train"), ("val", "validation")):
            lines.append(
                f"| {label} (epoch {result.get('best_epoch')}{fold}) | {loss(row.get(split + '_loss'))} "
                f"| {pct(row.get(split + '_accuracy'))} | {pct(row.get(split + '_macro_f1'))} |"
            )

    def interval(key: str) -> str:
        return f"[{pct((ci.get(key) or {}).get('low'))}, {pct((ci.get(key) or {}).get('high'))}]"

    lines.append(
        f"| test | – | {pct(test.get('accuracy'))} {interval('accuracy')} "
        f"| {pct(test.get('macro_f1'))} {interval('macro_f1')} |"
    )
    level = (r.params.get("evaluate") or {}).get("ci_level")
    level = f"{100 * level:g} %" if isinstance(level, (int, float)) else "?"
    lines += [
        "",
        f"Every test metric with its {level} bootstrap interval (`test_ci` in reports/metrics.json):",
        "",
        "| metric | test | interval |",
        "|---|---:|---:|",
    ]
    for column, path in METRICS:
        node = lookup(r.metrics, path)
        if isinstance(node, (int, float)):
            lines.append(f"| {column} | {pct(node)} | {interval(headline_key(path))} |")
    return lines


def gap(history: list[dict], best: int) -> list[str]:
    """Train minus validation accuracy and validation minus train loss: at the best epoch,
    the last, and where the accuracy gap is largest."""
    if not history:
        return ["No per-epoch history."]
    largest = max(history, key=lambda h: h["train_accuracy"] - h["val_accuracy"])
    rows = [("best", _at_epoch(history, best)), ("last", history[-1]), ("largest", largest)]
    lines = [
        "| epoch | train acc | val acc | gap (points) | train loss | val loss | val − train loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, h in rows:
        if h:
            lines.append(
                f"| {label} ({h['epoch']}) | {pct(h['train_accuracy'])} | {pct(h['val_accuracy'])} "
                f"| {points(h['train_accuracy'] - h['val_accuracy'])} | {loss(h['train_loss'])} "
                f"| {loss(h['val_loss'])} | {h['val_loss'] - h['train_loss']:+.4f} |"
            )
    return lines


def classes(r: RunRecord, k: int = 5) -> tuple[list[str], list[str], list[str]]:
    """(strongest, weakest, every class) as tables: test F1 with training clips; at most ``k``
    strongest and weakest, and at most half the classes with test files each."""
    counts = r.train_counts
    rows = [
        (lab, s.get("f1", 0.0), s.get("precision"), s.get("recall"), s.get("support"))
        for lab, s in r.per_class.items()
        if s.get("support")
    ]

    def tabled(items) -> list[str]:
        return [
            "| class | training clips | test files | precision | recall | F1 |",
            "|---|---:|---:|---:|---:|---:|",
        ] + [
            f"| {lab} | {count(counts.get(lab))} | {sup} | {pct(p)} | {pct(rc)} | {pct(f1)} |"
            for lab, f1, p, rc, sup in items
        ]

    k = max(1, min(k, len(rows) // 2))
    strongest = sorted(rows, key=lambda x: (-x[1], -counts.get(x[0], 0), x[0]))[:k]
    weakest = sorted(rows, key=lambda x: (x[1], counts.get(x[0], 0), x[0]))[:k]
    every = sorted(rows, key=lambda x: (-counts.get(x[0], 0), x[0]))
    return tabled(strongest), tabled(weakest), tabled(every)


def comparisons(r: RunRecord, against: list[tuple[str, Comparison]]) -> list[str]:
    """The summary row of each ``--against`` run, then each comparison in full."""
    keys = compared_keys()
    lines = [
        f"`{r.name}` minus each run, in percentage points; **bold**: the interval excludes zero.",
        "",
        "| against | test files | " + " | ".join(f"Δ {c}" for c, _ in keys) + " | McNemar |",
        "|---|---|" + "---:|" * len(keys) + "---|",
    ]
    for name, c in against:
        cells = [interval_cell(c.differences[k]) if k in c.differences else "–" for _, k in keys]
        files = "same" if c.paired else f"{c.n_a} vs {c.n_b}"
        lines.append(f"| `{name}` | {files} | " + " | ".join(cells) + f" | {mcnemar_text(c)} |")
    for name, c in against:
        lines += ["", f"### Against `{name}`", "", method(c), "", *table(c, name, r.name)]
        lines += ["", f"McNemar (files only `{name}` / only `{r.name}` right): {mcnemar_text(c)}"]
    return lines


def criteria(r: RunRecord, targets: list[Target]) -> list[str]:
    """The success criteria table and its tally."""
    lines = ["| criterion | value | result |", "|---|---:|---|"]
    met = 0
    for t in targets:
        v = target_value(r, t.key)
        ok = v >= t.threshold if t.op == ">=" else v <= t.threshold
        met += ok
        sign = "≥" if t.op == ">=" else "≤"
        lines.append(
            f"| `{t.key}` {sign} {t.threshold:g} | {v:.4f} | {'met' if ok else '**missed**'} |"
        )
    return lines + ["", f"{met} of {len(targets)} criteria met."]


def document(
    r: RunRecord,
    *,
    previous: RunRecord | None,
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
    p = r.params
    leaky = ", leaky split" if (p.get("split") or {}).get("leaky") else ""
    lines = [
        f"# `{r.name}`: {p.get('model')} + {p.get('loss')}{leaky}",
        "",
        f"`{command_line}`, {datetime.datetime.now():%Y-%m-%d %H:%M}. Every number is read from "
        f"the run's files (DVC: params.yaml, reports/) and {where}.",
        "",
        "## Configuration",
        "",
        *configuration(r),
    ]
    if previous is not None:
        lines += ["", f"### Changed from `{previous.name}`", "", *changes(r, previous)]
    results = r.fold_results()
    epochs = (p.get("train") or {}).get("epochs")
    lines += ["", "## Training progression", ""]
    for n, result in results.items():
        hist, best = r.histories.get(n, []), result.get("best_epoch")
        stopped = (
            f"stopped early after epoch {hist[-1]['epoch']}"
            if hist and hist[-1]["epoch"] < (epochs or 0)
            else "ran every epoch"
        )
        lines += [
            *([f"### Fold {n}", ""] if len(results) > 1 else []),
            f"Best epoch {best} of {len(hist)} (train.epochs {epochs}; {stopped}), chosen by "
            f"validation macro-F1 {pct(result.get('best_val_macro_f1'))}. Per-epoch values "
            f"from {r.history_source}; train metrics are averaged over each epoch while it trains "
            "(dropout and augmentation on).",
            "",
            *progression(hist, best),
        ]
        if f"progression_{n}" in figures:
            lines += ["", f"![training progression, fold {n}]({figures[f'progression_{n}']})"]
    lines += ["", "## Train, validation and test", "", *splits(r), "", "## Overfitting gap", ""]
    for n, result in results.items():
        lines += [*([f"Fold {n}:", ""] if len(results) > 1 else [])]
        lines += [*gap(r.histories.get(n, []), result.get("best_epoch")), ""]
    strongest, weakest, every = classes(r)
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
        lines += ["", "## Comparison", "", *comparisons(r, against)]
    if targets:
        lines += ["", "## Success criteria", "", *criteria(r, targets)]
    return "\n".join(lines) + "\n"


def progression_figure(history: list[dict], best_epoch: int, path: Path) -> None:
    """Loss, accuracy and macro-F1 per epoch, train and validation, the best epoch marked (PNG);
    drawn from the history the report tabulates, so figure and table show the same numbers."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 3)
    for ax, metric, label in zip(
        axes, ("loss", "accuracy", "macro_f1"), ("loss", "accuracy", "macro-F1"), strict=True
    ):
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}_{metric}"
            xy = [(h["epoch"], h[key]) for h in history if key in h]
            if xy:
                ax.plot(*zip(*xy, strict=True), style, label=split)
        ax.axvline(best_epoch, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    axes[0].set_title(f"best epoch {best_epoch} (dotted)", fontsize=9, loc="left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")


def write_figures(files: RunFiles, r: RunRecord, folder: Path, report: Path) -> dict[str, str]:
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
        for name, source in FIGURES.items():
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


def main(argv: list[str]) -> dict:
    ap = parser(__doc__, prog="audioclf report", params=False)
    add = ap.add_argument
    add("run", metavar="EXP", help="the run (experiment, revision, or workspace)")
    add(
        "--against",
        action="append",
        default=[],
        metavar="EXP",
        help="compare with this run (repeatable; the first is the previous phase)",
    )
    add(
        "--target",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="success criterion (repeatable), e.g. test.macro_f1=0.25",
    )
    add("--out", help="the report (default: reports/report-<EXP>.md)")
    args = ap.parse_args(argv)
    targets = [parse_target(t) for t in args.target]
    safe = re.sub(r"[^\w.-]", "_", args.run)
    from audioclf.io import repo_root
    from audioclf.tracking import resolve_store

    root = repo_root()
    return write_report(
        args.run,
        root=root,
        client=resolve_store(root).client(),
        against=args.against,
        targets=targets,
        out=Path(args.out or f"reports/report-{safe}.md"),
        command_line=shlex.join(["audioclf", "report", *argv]),
    )


def write_report(
    run: str,
    *,
    root: Path,
    client,
    against: list[str],
    targets: list[Target],
    out: Path,
    command_line: str,
) -> dict:
    """Write the report of ``run`` (a name in repository ``root``; ``client``: an
    ``MlflowClient`` of its store) to ``out``, its figures beside it.

    Returns:
        ``out``, the ``record``, the ``comparisons`` and the report's ``text``.
    """
    files = RunFiles(run, root)
    record = load_record(files, client)
    for t in targets:
        target_value(record, t.key)  # a bad key fails before anything is written
    others = [RunFiles(name, root) for name in against]
    previous = load_record(others[0], client) if others else None
    comparisons = [(o.name, compare(o, files)) for o in others]
    figures = write_figures(files, record, out.with_name(out.stem + "_files"), out)
    text = document(
        record,
        previous=previous,
        against=comparisons,
        targets=targets,
        figures=figures,
        command_line=command_line,
    )
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    log.info("report: wrote %s (figures in %s)", out, out.stem + "_files")
    return {"out": out, "record": record, "comparisons": comparisons, "text": text}
