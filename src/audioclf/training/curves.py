"""Training curves: the per-epoch table (a DVC plot) and its figure (an MLflow artifact).

Evaluation figures: :mod:`audioclf.evaluation.plots`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from audioclf.io import atomic_path  # noqa: E402


def plot_curves(history: list[dict], path: Path) -> None:
    """Train/val loss and validation macro-F1 per epoch, as PNG."""
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [h["train_loss"] for h in history], label="train")
    a.plot(epochs, [h["val_loss"] for h in history], label="val")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    b.plot(epochs, [h["train_macro_f1"] for h in history], label="train")
    b.plot(epochs, [h["val_macro_f1"] for h in history], label="val")
    b.set_xlabel("epoch")
    b.set_ylabel("macro-F1")
    b.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_curves(history: list[dict], path: Path) -> None:
    """One CSV row per epoch (the keys of ``history``'s rows as columns), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
