"""The phase report's own figure: the training progression, train against validation.

The evaluation figures (confusion matrix, per-class F1, reliability) are the run's
own files, copied; this one is drawn from the per-epoch history the report tabulates,
so figure and table show the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from audioclf.io import atomic_path  # noqa: E402


def progression_figure(history: list[dict], best_epoch: int, path: Path) -> None:
    """Loss, accuracy and macro-F1 per epoch, train and validation, the best epoch marked (PNG)."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, metric, label in zip(
        axes, ("loss", "accuracy", "macro_f1"), ("loss", "accuracy", "macro-F1"), strict=True
    ):
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}_{metric}"
            points = [(e, h[key]) for e, h in zip(epochs, history, strict=True) if key in h]
            if points:
                ax.plot(*zip(*points, strict=True), style, label=split)
        ax.axvline(best_epoch, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend(loc="best", fontsize=8)
    axes[0].set_title(f"best epoch {best_epoch} (dotted)", fontsize=9, loc="left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
