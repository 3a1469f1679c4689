"""Evaluation figures (PNG) for DVC plots and MLflow: confusion matrix, per-class F1 against
training count, reliability diagram. Classes are ordered by training frequency so that the
head, mid and tail buckets read as blocks, and labels stay legible at 50+ classes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from audioclf.evaluation.buckets import BUCKETS  # noqa: E402
from audioclf.evaluation.calibration import expected_calibration_error, reliability_bins  # noqa: E402
from audioclf.io import atomic_path  # noqa: E402

BUCKET_COLOURS = {"head": "tab:blue", "mid": "tab:orange", "tail": "tab:red"}
ANNOTATE_MAX = 30  # classes up to which every point / cell gets a text label


def _save(fig: plt.Figure, path: Path, dpi: int = 120) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(
            tmp, dpi=dpi, format="png", bbox_inches="tight"
        )  # long tick labels never clipped
    plt.close(fig)


def frequency_order(counts: np.ndarray, labels: list[str]) -> np.ndarray:
    """Class indices by descending training count, then by name.

    >>> frequency_order(np.array([3., 9., 3.]), ["b", "z", "a"]).tolist()
    [1, 2, 0]
    """
    return np.array(sorted(range(len(labels)), key=lambda i: (-counts[i], labels[i])), dtype=int)


def plot_confusion(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: list[str],
    counts: np.ndarray,
    bucket_of: np.ndarray,
    path: Path,
) -> None:
    """Row-normalised confusion matrix (recall on the diagonal), classes by training frequency.

    Args:
        y_true: (N,) true class indices.
        y_pred: (N,) predicted class indices.
        labels: the C class names.
        counts: (C,) training clips per class (the row labels show them).
        bucket_of: (C,) bucket of each class; dashed lines separate the buckets.
        path: PNG to write.
    """
    order = frequency_order(counts, labels)
    n = len(labels)
    cm = confusion_matrix(y_true, y_pred, labels=order).astype(float)  # (C, C) in display order
    support = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    size = max(6.0, 0.26 * n + 3)  # ~0.26 in per class
    font = 8 if n <= ANNOTATE_MAX else 6.5
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    names = [labels[i] for i in order]
    ax.set_xticks(range(n), names, rotation=90, fontsize=font)
    ax.set_yticks(
        range(n),
        [
            f"{name} ({counts[i]:g} | {int(s)})"
            for name, i, s in zip(names, order, support[:, 0], strict=True)
        ],
        fontsize=font,
    )
    ax.set_xlabel("predicted", fontsize=11)
    ax.set_ylabel("actual (training clips | test items)", fontsize=11)
    ax.set_title(
        "Confusion matrix, rows normalised; classes by training frequency", fontsize=max(12, n / 5)
    )
    if n <= ANNOTATE_MAX:
        for i, j in zip(*np.nonzero(cm), strict=True):
            ax.text(
                j,
                i,
                int(cm[i, j]),
                ha="center",
                va="center",
                fontsize=6,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ordered_buckets = bucket_of[order]
    for k in np.flatnonzero(ordered_buckets[1:] != ordered_buckets[:-1]):
        ax.axhline(k + 0.5, color="tab:red", lw=0.8, ls="--")
        ax.axvline(k + 0.5, color="tab:red", lw=0.8, ls="--")
    for name in BUCKETS:
        rows = np.flatnonzero(ordered_buckets == name)
        if len(rows):
            ax.text(
                n - 0.4,
                rows.mean(),
                f" {name}",
                ha="left",
                va="center",
                fontsize=font + 1,
                color="tab:red",
                rotation=90,
                clip_on=False,
            )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.06, label="fraction of the row")
    _save(fig, path)


def plot_f1_vs_count(
    f1: np.ndarray,
    support: np.ndarray,
    counts: np.ndarray,
    bucket_of: np.ndarray,
    labels: list[str],
    path: Path,
    *,
    head: int,
    tail: int,
) -> None:
    """Per-class test F1 beside training clips, one row per class by training frequency.

    Every class is labelled (the figure grows with the class count); bars are coloured
    by bucket and each bucket's macro-F1 is drawn over its rows. Classes without test
    items have no F1 and say so.
    """
    order = frequency_order(counts, labels)
    n = len(labels)
    rows = np.arange(n)
    font = 8 if n <= ANNOTATE_MAX else 7
    colours = [BUCKET_COLOURS[b] for b in bucket_of[order]]
    fig, (left, right) = plt.subplots(
        1,
        2,
        figsize=(11, max(4.5, 0.2 * n + 1.8)),
        sharey=True,
        gridspec_kw={"width_ratios": [1, 2]},
    )
    shown = np.maximum(counts[order], 0.5)  # a class with 0 clips shows at 0.5
    left.barh(rows, shown, color=colours)
    for r in rows:
        left.text(
            shown[r] * 1.08,
            r,
            f"{counts[order][r]:g}",
            va="center",
            ha="right",
            fontsize=font - 1,
            color="dimgrey",
        )
    left.set_xscale("log")
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlim(shown.max() * 3, 0.4)  # inverted: bars grow to the left
    left.axvline(head - 0.5, color="grey", ls="--", lw=0.8)
    left.axvline(tail + 0.5, color="grey", ls="--", lw=0.8)
    left.set_xlabel(f"training clips (log); dashed: head >= {head}, tail <= {tail}")
    left.set_yticks(rows, [labels[i] for i in order], fontsize=font)
    left.set_ylim(n - 0.5, -0.5)  # most frequent class on top
    scored = support[order] > 0
    right.barh(rows[scored], f1[order][scored], color=np.array(colours, dtype=object)[scored])
    for r in rows[~scored]:
        right.text(0.01, r, "no test items", va="center", fontsize=font - 1, color="grey")
    for r in rows[scored]:
        right.text(
            f1[order][r] + 0.01,
            r,
            f"{int(support[order][r])}",
            va="center",
            fontsize=font - 1,
            color="dimgrey",
        )
    for name in BUCKETS:
        members = np.flatnonzero((bucket_of[order] == name) & scored)
        if len(members):
            mean = f1[order][members].mean()
            right.plot(
                [mean, mean],
                [members.min() - 0.4, members.max() + 0.4],
                color=BUCKET_COLOURS[name],
                lw=1.5,
                ls="--",
                label=f"{name}: {len(members)} classes, macro-F1 {mean:.3f}",
            )
    right.set_xlim(0, 1.08)
    right.set_xlabel("test F1 (number: test items)")
    right.legend(loc="lower right", fontsize=8)
    right.grid(axis="x", alpha=0.3)
    fig.suptitle("Per-class F1 against training frequency")
    _save(fig, path)


def plot_reliability(
    y_true: np.ndarray, probs: np.ndarray, path: Path, *, n_bins: int = 15
) -> None:
    """Reliability diagram: accuracy per confidence bin (bars) and the bin's mean confidence
    (diamonds) against the diagonal, with the bin counts below.

    Args:
        y_true: (N,) true class indices.
        probs: (N, C) class probabilities.
        path: PNG to write.
        n_bins: equal-width confidence bins, as for the ECE.
    """
    bins = reliability_bins(y_true, probs, n_bins)
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = 1.0 / n_bins
    filled = bins.count > 0
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(6.5, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.bar(
        centres[filled],
        bins.accuracy[filled],
        width=width,
        color="tab:blue",
        edgecolor="black",
        lw=0.5,
        label="accuracy in the bin",
    )
    ax.vlines(
        centres[filled],
        bins.accuracy[filled],
        bins.confidence[filled],
        color="tab:red",
        lw=2,
        label="gap (|gap| weighted by items = ECE)",
    )
    ax.scatter(
        centres[filled],
        bins.confidence[filled],
        marker="D",
        s=16,
        color="black",
        zorder=3,
        label="mean confidence in the bin",
    )
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ece = expected_calibration_error(y_true, probs, n_bins)
    ax.set_title(
        f"Reliability diagram, ECE {ece:.3f}\n{n_bins} equal-width bins, {int(bins.count.sum())} test items"
    )
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(centres, bins.count, width=width, color="grey", edgecolor="black", lw=0.5)
    hist.set_xlabel("confidence (top class probability)")
    hist.set_ylabel("items")
    _save(fig, path)


def evaluation_figures(
    result: dict,
    *,
    confusion: Path,
    per_class: Path,
    reliability: Path,
    head: int,
    tail: int,
    ece_bins: int,
) -> list[Path]:
    """The three evaluation PNGs from an :func:`audioclf.evaluation.evaluate.evaluate_folds` result (pooled over folds).

    Returns:
        The paths written.
    """
    y_true, probs, labels = result["y_true"], result["probs"], result["labels"]
    counts, bucket_of = result["train_counts"], result["bucket_of"]
    f1 = np.array([result["per_class"][lab]["f1"] for lab in labels])
    support = np.array([result["per_class"][lab]["support"] for lab in labels])
    plot_confusion(y_true, probs.argmax(axis=1), labels, counts, bucket_of, Path(confusion))
    plot_f1_vs_count(f1, support, counts, bucket_of, labels, Path(per_class), head=head, tail=tail)
    plot_reliability(y_true, probs, Path(reliability), n_bins=ece_bins)
    return [Path(confusion), Path(per_class), Path(reliability)]
