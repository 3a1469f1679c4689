import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from audioclf.evaluation.bootstrap import (
    average_precision,
    average_precisions,
    bootstrap_ci,
    fold_summary,
    headline,
)
from audioclf.evaluation.buckets import assign_buckets, bucket_f1
from audioclf.evaluation.metrics import HEADLINE, classification_metrics


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(60) < 0.3
    y[0] = True
    score = np.round(rng.random(60), 1)  # many ties
    assert average_precision(y, score) == pytest.approx(
        average_precision_score(y, score), abs=1e-12
    )


def test_average_precisions_vectorised_equals_one_by_one():
    rng = np.random.default_rng(7)
    y = rng.random((50, 4)) < 0.3
    y[0] = True
    score = np.round(rng.random((50, 4)), 1)
    expected = [average_precision_score(y[:, k], score[:, k]) for k in range(4)]
    np.testing.assert_allclose(average_precisions(y, score), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed, rounding", [(0, None), (1, 1), (2, 2)])
def test_headline_matches_reference_metrics(seed, rounding):
    """Every headline metric, and the bucket F1s, equal scikit-learn's (ties included when rounded)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 9, 120)
    probs = rng.dirichlet(np.ones(10), 120)  # class 9 never true, sometimes predicted
    if rounding is not None:
        probs = np.round(probs, rounding) + 1e-3  # many tied scores, still in [0, 1]
        probs /= probs.sum(axis=1, keepdims=True)
    labels = [str(i) for i in range(10)]
    ref = classification_metrics(y, probs, labels, ece_bins=10)
    bucket_of = assign_buckets(rng.integers(0, 30, 10), head=20, tail=5)
    fast = headline(y, probs, ece_bins=10, bucket_of=bucket_of)
    f1 = np.array([ref["per_class"][lab]["f1"] for lab in labels])
    support = np.array([ref["per_class"][lab]["support"] for lab in labels])
    expected = {**{m: ref[m] for m in HEADLINE}, **bucket_f1(f1, support, bucket_of)}
    assert set(fast) == set(expected)
    for key in fast:
        assert fast[key] == pytest.approx(expected[key], abs=1e-12), key


def test_fold_summary_golden():
    summary = fold_summary(
        [
            {"macro_f1": 0.6, "accuracy": 0.8},
            {"macro_f1": 0.7, "accuracy": 0.8},
            {"macro_f1": 0.8, "accuracy": 0.8},
        ]
    )
    assert summary == {"macro_f1": {"mean": 0.7, "std": 0.1}, "accuracy": {"mean": 0.8, "std": 0.0}}
    assert fold_summary([{"a": 0.5}]) == {"a": {"mean": 0.5, "std": 0.0}}


def _noisy_predictions(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    probs = rng.dirichlet(np.ones(4), n) + 0.8 * np.eye(4)[y] * (rng.random(n) < 0.7)[:, None]
    return y, probs / probs.sum(axis=1, keepdims=True)


def test_bootstrap_ci_contains_point_and_narrows_with_n():
    widths = []
    for n in (60, 600):
        y, probs = _noisy_predictions(n)
        point = headline(y, probs)
        ci = bootstrap_ci(y, probs, n_boot=300, seed=1)
        assert set(ci) == set(HEADLINE)
        for metric, (lo, hi) in ci.items():
            assert lo <= point[metric] <= hi, metric
        widths.append({m: hi - lo for m, (lo, hi) in ci.items()})
    # the interval shrinks like 1/sqrt(n): 10x the items, about a third of the width
    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "ece"):
        assert widths[1][metric] < widths[0][metric] / 2, metric


def test_bootstrap_covers_buckets_present_in_the_data():
    y, probs = _noisy_predictions(200)
    ci = bootstrap_ci(
        y, probs, n_boot=100, seed=0, bucket_of=np.array(["head", "head", "tail", "tail"])
    )
    point = headline(y, probs, bucket_of=np.array(["head", "head", "tail", "tail"]))
    assert {"head_macro_f1", "tail_macro_f1"} <= set(ci) and "mid_macro_f1" not in ci
    assert ci["tail_macro_f1"][0] <= point["tail_macro_f1"] <= ci["tail_macro_f1"][1]


def test_bootstrap_is_seeded():
    y, probs = _noisy_predictions(50)
    assert bootstrap_ci(y, probs, n_boot=50, seed=3) == bootstrap_ci(y, probs, n_boot=50, seed=3)
    with pytest.raises(ValueError, match="n_boot must be >= 1, got 0"):
        bootstrap_ci(y, probs, n_boot=0)
