"""Top-label calibration: reliability bins and expected calibration error (ECE).

A model is calibrated when, among the items it predicts with confidence ~p, a
fraction ~p is right. Confidence is the top class probability; items are put in
``n_bins`` equal-width bins over [0, 1] (bin m holds confidences in ((m-1)/M, m/M],
the first bin also holds 0), and ECE is the item-weighted mean gap between accuracy
and mean confidence over the bins (Guo et al., 2017, "On Calibration of Modern Neural
Networks"; 15 bins is their, and the common, choice). scikit-learn has no multiclass
ECE (``calibration_curve`` is binary), so this module is the reference and its tests
use hand-made golden values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics, each of shape (n_bins,); empty bins have count 0 and NaN means."""

    edges: np.ndarray  # (n_bins + 1,) from 0 to 1
    count: np.ndarray  # items per bin
    accuracy: np.ndarray  # fraction right per bin
    confidence: np.ndarray  # mean top probability per bin


def _check(probs: np.ndarray, n_bins: int) -> None:
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"probs must have shape (N, C) with N >= 1, got {probs.shape}")
    if probs.min() < 0 or probs.max() > 1 + 1e-6:
        raise ValueError(
            f"probs must be probabilities in [0, 1], got values in [{probs.min():g}, {probs.max():g}]"
        )


def bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence: m for confidences in (m/M, (m+1)/M]; 0 also goes to bin 0.

    >>> bin_index(np.array([0.0, 0.1, 0.5, 0.51, 1.0]), 2).tolist()
    [0, 0, 0, 1, 1]
    """
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.digitize(confidence, inner, right=True)


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> ReliabilityBins:
    """Accuracy and mean confidence of the top-class prediction per confidence bin.

    Args:
        y_true: (N,) true class indices.
        probs: (N, C) class probabilities.
        n_bins: equal-width bins over [0, 1].

    Returns:
        :class:`ReliabilityBins`.
    """
    probs = np.asarray(probs, dtype=np.float64)
    _check(probs, n_bins)
    confidence = probs.max(axis=1)  # (N,)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(float)  # (N,)
    b = bin_index(confidence, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(b, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(b, weights=confidence, minlength=n_bins) / count
    return ReliabilityBins(np.linspace(0.0, 1.0, n_bins + 1), count, accuracy, mean_conf)


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE = sum over bins of (items in bin / N) * |accuracy - mean confidence|.

    >>> y = np.array([0, 1])
    >>> p = np.array([[0.9, 0.1], [0.8, 0.2]])   # both predicted 0 at 0.9 and 0.8: one right
    >>> round(expected_calibration_error(y, p, n_bins=10), 4)   # bins 0.8 and 0.9: |1-.9|/2 + |0-.8|/2
    0.45
    """
    bins = reliability_bins(y_true, probs, n_bins)
    filled = bins.count > 0
    gaps = np.abs(bins.accuracy[filled] - bins.confidence[filled])
    return float(np.sum(bins.count[filled] * gaps) / bins.count.sum())
