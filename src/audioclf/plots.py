"""Figures for DVC plots and MLflow artifacts."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from audioclf.io import atomic_path  # noqa: E402


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], path: Path,
                   title: str = "Confusion matrix (rows normalised)") -> None:
    """Row-normalised confusion matrix as PNG, classes in label order."""
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(len(labels))).astype(float)
    support = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    size = max(6.0, 0.32 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), [f"{lab} ({int(n)})" for lab, n in zip(labels, support[:, 0])], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual (test support)")
    ax.set_title(title)
    if len(labels) <= 30:
        for i, j in zip(*np.nonzero(cm)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


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
