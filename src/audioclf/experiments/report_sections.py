"""The sections of a run's phase report, each from a :class:`RunRecord` (what DVC and MLflow hold).

Every number is formatted from the record, never typed: metrics in percent with one
decimal (differences in points), losses with four decimals, params as params.yaml holds
them. :mod:`audioclf.experiments.report` assembles the sections into the document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from audioclf.config.schema import flatten
from audioclf.evaluation.paired import Comparison
from audioclf.experiments.columns import COMPARED, METRICS, headline_key, interval_cell, points
from audioclf.experiments.compare import mcnemar_text, method, table
from audioclf.experiments.tracked import TrackedRun


@dataclass
class RunRecord:
    """One run as the report reads it.

    Attributes:
        name: the experiment (or revision, or ``workspace``).
        params: its params.yaml.
        metrics: reports/metrics.json.
        train: reports/train.json (one fold's result, or ``folds`` for cross-validation).
        per_class: reports/per_class.json.
        train_counts: class -> training clips (reports/split.json).
        tracked: its MLflow run, if the store holds it.
        histories: fold -> one dict per epoch (MLflow, else reports/curves).
        history_source: where the epochs were read, for the text.
    """

    name: str
    params: dict
    metrics: dict
    train: dict
    per_class: dict
    train_counts: dict[str, float]
    tracked: TrackedRun | None = None
    histories: dict[int, list[dict]] = field(default_factory=dict)
    history_source: str = ""

    def fold_results(self) -> dict[int, dict]:
        """fold -> its training result (best epoch, best validation macro-F1)."""
        folds = self.train.get("folds")
        return {int(n): r for n, r in folds.items()} if folds else {0: self.train}


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
    model, loss_name = p.get("model"), p.get("loss")
    train = dict(p.get("train") or {})
    seed = p.get("seed")
    train_seed = train.get("seed")
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
        (
            "split",
            f"{_settings(split)}; leaky split" if split.get("leaky") else _settings(split),
        ),
        (
            "seeds",
            f"seed {value(seed)} (data, split); train.seed {value(train_seed)}"
            + (f" (follows seed: {value(seed)})" if train_seed is None else ""),
        ),
        ("features", _settings(p.get("features") or {}, skip=("store_dir", "workers", "device"))),
    ]
    return ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]


def _relevant(params: dict) -> dict[str, Any]:
    """Flattened params without other models' and losses' settings (they shape nothing)."""
    flat = flatten(params)
    keep = (f"model_params.{params.get('model')}.", f"loss_params.{params.get('loss')}.")
    return {
        k: v
        for k, v in flat.items()
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
        cells = [
            loss(h.get("train_loss")),
            loss(h.get("val_loss")),
            pct(h.get("train_accuracy")),
            pct(h.get("val_accuracy")),
            pct(h.get("train_macro_f1")),
            pct(h.get("val_macro_f1")),
            f"{h['lr']:.3g}" if "lr" in h else "–",
        ]
        epoch = str(h["epoch"])
        if h["epoch"] == best:
            cells = [f"**{c}**" for c in cells]
            epoch = f"**{epoch} (best)**"
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return lines


def at_epoch(history: list[dict], epoch: int) -> dict:
    return next((h for h in history if h["epoch"] == epoch), {})


def splits(r: RunRecord) -> list[str]:
    """Train and validation at each fold's best epoch, then the test metrics with intervals."""
    ci = r.metrics.get("test_ci") or {}
    test = r.metrics.get("test") or {}
    lines = ["| split | loss | accuracy | macro-F1 |", "|---|---:|---:|---:|"]
    for n, result in r.fold_results().items():
        row = at_epoch(r.histories.get(n, []), result.get("best_epoch"))
        fold = f", fold {n}" if len(r.fold_results()) > 1 else ""
        for split in ("train", "val"):
            label = "train" if split == "train" else "validation"
            lines.append(
                f"| {label} (epoch {result.get('best_epoch')}{fold}) | {loss(row.get(split + '_loss'))} "
                f"| {pct(row.get(split + '_accuracy'))} | {pct(row.get(split + '_macro_f1'))} |"
            )

    def with_ci(key: str) -> str:
        c = ci.get(key) or {}
        return f"{pct(test.get(key))} [{pct(c.get('low'))}, {pct(c.get('high'))}]"

    lines.append(f"| test | – | {with_ci('accuracy')} | {with_ci('macro_f1')} |")
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
        node = r.metrics
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, (int, float)):
            c = ci.get(headline_key(path)) or {}
            lines.append(
                f"| {column} | {pct(node)} | [{pct(c.get('low'))}, {pct(c.get('high'))}] |"
            )
    return lines


def gap(history: list[dict], best: int) -> list[str]:
    """Train minus validation accuracy and validation minus train loss: at the best epoch,
    the last, and where the accuracy gap is largest."""
    if not history:
        return ["No per-epoch history."]
    rows = [("best", at_epoch(history, best)), ("last", history[-1])]
    rows.append(("largest", max(history, key=lambda h: h["train_accuracy"] - h["val_accuracy"])))
    lines = [
        "| epoch | train acc | val acc | gap (points) | train loss | val loss | val − train loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, h in rows:
        if not h:
            continue
        lines.append(
            f"| {label} ({h['epoch']}) | {pct(h['train_accuracy'])} | {pct(h['val_accuracy'])} "
            f"| {points(h['train_accuracy'] - h['val_accuracy'])} | {loss(h['train_loss'])} "
            f"| {loss(h['val_loss'])} | {h['val_loss'] - h['train_loss']:+.4f} |"
        )
    return lines


def classes(r: RunRecord, k: int = 5) -> tuple[list[str], list[str], list[str]]:
    """(strongest, weakest, every class) as tables: test F1 with training clips; at most ``k``
    strongest and weakest, and at most half the classes with test files each."""
    rows = [
        (lab, s.get("f1", 0.0), s.get("precision"), s.get("recall"), s.get("support"))
        for lab, s in r.per_class.items()
        if s.get("support")
    ]
    head = [
        "| class | training clips | test files | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def table(items) -> list[str]:
        return head + [
            f"| {lab} | {count(r.train_counts.get(lab))} | {sup} | {pct(p)} | {pct(rc)} | {pct(f1)} |"
            for lab, f1, p, rc, sup in items
        ]

    k = max(1, min(k, len(rows) // 2))
    ranked = sorted(rows, key=lambda x: (-x[1], -r.train_counts.get(x[0], 0), x[0]))
    weakest = sorted(rows, key=lambda x: (x[1], r.train_counts.get(x[0], 0), x[0]))[:k]
    by_count = sorted(rows, key=lambda x: (-r.train_counts.get(x[0], 0), x[0]))
    return table(ranked[:k]), table(weakest), table(by_count)


def comparisons(r: RunRecord, against: list[tuple[str, Comparison]]) -> list[str]:
    """The summary row of each ``--against`` run, then each comparison in full."""
    keys = [(c, headline_key(dict(METRICS)[c])) for c in COMPARED]
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
