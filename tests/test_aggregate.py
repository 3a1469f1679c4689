import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from audioclf.aggregate import average_precision, bootstrap_ci, fold_summary, headline
from audioclf.metrics import classification_metrics


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(60) < 0.3
    y[0] = True
    score = np.round(rng.random(60), 1)  # many ties
    assert average_precision(y, score) == pytest.approx(average_precision_score(y, score), abs=1e-12)


def test_headline_matches_reference_metrics():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 80)
    probs = rng.dirichlet(np.ones(7), 80)  # class 6 never true, sometimes predicted
    ref = classification_metrics(y, probs, [str(i) for i in range(7)])
    fast = headline(y, probs)
    for key in fast:
        assert fast[key] == pytest.approx(ref[key], abs=1e-12), key


def test_fold_summary_golden():
    summary = fold_summary([{"macro_f1": 0.6, "accuracy": 0.8}, {"macro_f1": 0.7, "accuracy": 0.8},
                            {"macro_f1": 0.8, "accuracy": 0.8}])
    assert summary == {"macro_f1": {"mean": 0.7, "std": 0.1}, "accuracy": {"mean": 0.8, "std": 0.0}}
    assert fold_summary([{"a": 0.5}]) == {"a": {"mean": 0.5, "std": 0.0}}


def _noisy_predictions(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    probs = rng.dirichlet(np.ones(4), n) + 0.8 * np.eye(4)[y] * (rng.random(n) < 0.7)[:, None]
    return y, probs


def test_bootstrap_ci_contains_point_and_narrows_with_n():
    widths = []
    for n in (60, 600):
        y, probs = _noisy_predictions(n)
        point = headline(y, probs)
        ci = bootstrap_ci(y, probs, n_boot=300, seed=1)
        for metric, (lo, hi) in ci.items():
            assert lo <= point[metric] <= hi, metric
        widths.append(ci["accuracy"][1] - ci["accuracy"][0])
    assert widths[1] < widths[0] / 2


def test_bootstrap_is_seeded():
    y, probs = _noisy_predictions(50)
    assert bootstrap_ci(y, probs, n_boot=50, seed=3) == bootstrap_ci(y, probs, n_boot=50, seed=3)
    with pytest.raises(ValueError, match="n_boot must be >= 1, got 0"):
        bootstrap_ci(y, probs, n_boot=0)
