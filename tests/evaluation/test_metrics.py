"""Metrics: golden values on hand-made predictions, and each equal to scikit-learn's (the
reference) to 1e-12 on seeded random ones, tied scores included."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

from audioclf.evaluation.buckets import assign_buckets, bucket_f1
from audioclf.evaluation.metrics import (
    HEADLINE,
    aggregate_by_file,
    average_precisions,
    classification_metrics,
    headline,
    roc_aucs,
    top_k_accuracy,
)

TOLERANCE = 1e-12  # against scikit-learn: the same sums in another order

LABELS = ["a", "b", "c"]
# hand-made case: 6 items, truth a a b b c c; predictions a b b b c a
Y = np.array([0, 0, 1, 1, 2, 2])
P = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.1, 0.8],
        [0.5, 0.2, 0.3],
    ]
)


def test_golden_values():
    m = classification_metrics(Y, P, LABELS)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class: a P=1/2 R=1/2 F=1/2; b P=2/3 R=1 F=0.8; c P=1 R=1/2 F=2/3
    assert m["per_class"]["a"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["c"]["precision"] == 1.0 and m["per_class"]["c"]["recall"] == 0.5
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["weighted_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)  # equal supports
    # AP: a ranks [.8 a, .5 c, .3 a] -> (1 + 2/3)/2; b ranks [.8 b, .7 b] first -> 1; c [.8 c, .3 c(2nd)] -> 1
    assert m["macro_map"] == pytest.approx(((1 + 2 / 3) / 2 + 1 + 1) / 3)


def test_golden_balanced_accuracy_auc_and_ece():
    m = classification_metrics(Y, P, LABELS, ece_bins=5)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)  # recalls a, b, c
    # AUC a: positives .8, .3 against negatives .1 .2 .1 .5 -> 4 + 3 of 8 pairs; b and c separate perfectly
    assert m["macro_auc"] == pytest.approx((7 / 8 + 1 + 1) / 3)
    assert m["top5_accuracy"] == 1.0  # 3 classes: every class is in the top 5
    # confidences .8 .6 .8 .7 .8 .5, right 1 0 1 1 1 0; 5 bins of 0.2:
    # (.4,.6]: .6 wrong, .5 wrong -> |0 - .55| * 2; (.6,.8]: .8 .8 .7 .8 all right -> |1 - .775| * 4
    assert m["ece"] == pytest.approx((2 * 0.55 + 4 * 0.225) / 6)


def test_top5_golden_over_seven_classes():
    y = np.array([0, 6, 3])
    p = np.array(
        [
            [0.04, 0.2, 0.19, 0.18, 0.17, 0.16, 0.06],  # true class last of 7 -> miss
            [0.3, 0.1, 0.1, 0.1, 0.05, 0.05, 0.3],  # true class tied first -> hit
            [0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2],
        ]
    )  # true class tied 4th-7th: index order decides -> hit
    assert top_k_accuracy(y, p) == pytest.approx(2 / 3)
    assert classification_metrics(y, p, [str(i) for i in range(7)])[
        "top5_accuracy"
    ] == pytest.approx(2 / 3)


def test_a_single_true_class_is_rejected():
    with pytest.raises(ValueError, match="single class"):
        classification_metrics(
            np.array([1, 1]), np.array([[0.2, 0.8, 0.0], [0.6, 0.4, 0.0]]), LABELS
        )


def test_classes_absent_from_truth_and_predictions_do_not_count():
    y = np.array([0, 1])
    p = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    m = classification_metrics(y, p, LABELS)
    assert m["macro_f1"] == 1.0 and m["macro_map"] == 1.0


def test_validation_messages():
    with pytest.raises(ValueError, match=r"probs must have shape \(N, 3\)"):
        classification_metrics(Y, P[:, :2], LABELS)
    with pytest.raises(ValueError, match="6 items but probs has 5 rows"):
        classification_metrics(Y, P[:5], LABELS)


def test_aggregate_by_file_averages_segments():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8]])
    mean, y, files = aggregate_by_file(probs, np.array([0, 0, 1]), ["x", "x", "y"])
    assert files == ["x", "y"] and list(y) == [0, 1]
    np.testing.assert_allclose(mean, [[0.5, 0.5], [0.2, 0.8]])


def _scikit_learn(y: np.ndarray, probs: np.ndarray) -> dict:
    """The headline metrics (all but ECE, which scikit-learn lacks: golden values test it) and
    per-class scores by scikit-learn, one call per metric and class."""
    n_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1)
    present = np.unique(np.concatenate([y, y_pred]))
    true = np.unique(y)
    with warnings.catch_warnings():  # predicted-only classes: warned about, then left out
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = balanced_accuracy_score(y, y_pred)
    p, r, f, s = precision_recall_fscore_support(
        y, y_pred, labels=np.arange(n_classes), zero_division=0
    )
    return {
        "accuracy": accuracy_score(y, y_pred),
        "balanced_accuracy": balanced,
        "macro_f1": f1_score(y, y_pred, labels=present, average="macro", zero_division=0),
        "weighted_f1": f1_score(y, y_pred, labels=present, average="weighted", zero_division=0),
        "macro_map": np.mean([average_precision_score(y == c, probs[:, c]) for c in true]),
        "macro_auc": np.mean([roc_auc_score(y == c, probs[:, c]) for c in true]),
        "top5_accuracy": top_k_accuracy_score(y, probs, k=5, labels=np.arange(n_classes)),
        "per_class": np.stack([p, r, f, s], axis=1),  # (C, 4)
    }


@pytest.mark.parametrize("seed, rounding", [(0, None), (1, 1), (2, 2)])
def test_every_metric_equals_scikit_learns(seed, rounding):
    """Headline, per-class and bucket scores (ties included when rounded)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 9, 120)
    probs = rng.dirichlet(np.ones(10), 120)  # class 9 never true, sometimes predicted
    if rounding is not None:
        probs = np.round(probs, rounding) + 1e-3  # many tied scores, still in [0, 1]
        probs /= probs.sum(axis=1, keepdims=True)
    labels = [str(i) for i in range(10)]
    ref = _scikit_learn(y, probs)
    got = classification_metrics(y, probs, labels)
    assert set(got) == {"n", "per_class", *HEADLINE}
    for metric in set(HEADLINE) - {"ece"}:
        assert got[metric] == pytest.approx(ref[metric], abs=TOLERANCE), metric
    keys = ("precision", "recall", "f1", "support")
    per_class = [[got["per_class"][lab][k] for k in keys] for lab in labels]
    np.testing.assert_allclose(per_class, ref["per_class"], rtol=0, atol=TOLERANCE)
    bucket_of = assign_buckets(rng.integers(0, 30, 10), head=20, tail=5)
    fast = headline(y, probs, bucket_of=bucket_of)
    expected = bucket_f1(ref["per_class"][:, 2], ref["per_class"][:, 3], bucket_of)
    assert {k: fast[k] for k in expected} == pytest.approx(expected, abs=TOLERANCE)
    assert {k: fast[k] for k in HEADLINE} == {k: got[k] for k in HEADLINE}


@pytest.mark.parametrize("seed", range(3))
def test_average_precisions_and_roc_aucs_equal_scikit_learns_column_by_column(seed):
    rng = np.random.default_rng(seed)
    y = rng.random((60, 4)) < 0.3
    y[0], y[1] = True, False  # each column with positives and negatives
    score = np.round(rng.random((60, 4)), 1)  # many ties
    ap = [average_precision_score(y[:, k], score[:, k]) for k in range(4)]
    auc = [roc_auc_score(y[:, k], score[:, k]) for k in range(4)]
    np.testing.assert_allclose(average_precisions(y, score), ap, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(roc_aucs(y, score), auc, rtol=0, atol=TOLERANCE)
