"""Fold summaries (golden values) and bootstrap intervals: around the point, narrowing with n,
seeded, with buckets."""

import numpy as np
import pytest

from audioclf.evaluation.bootstrap import bootstrap_ci, fold_summary
from audioclf.evaluation.metrics import HEADLINE, headline


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


def test_groups_are_resampled_whole_and_widen_the_interval_when_their_files_agree():
    # 100 recordings of 5 clips each; a recording's clips are all right or all wrong together
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), 5)
    y = rng.integers(0, 4, 500)
    right = np.repeat(rng.random(100) < 0.7, 5)
    guess = np.where(right, y, (y + 1) % 4)
    probs = 0.1 + 0.6 * np.eye(4)[guess]
    probs /= probs.sum(axis=1, keepdims=True)
    files = bootstrap_ci(y, probs, n_boot=400, seed=1)
    recordings = bootstrap_ci(y, probs, n_boot=400, seed=1, groups=groups)
    wider = {
        m: (recordings[m][1] - recordings[m][0]) / (files[m][1] - files[m][0])
        for m in ("accuracy", "macro_f1")
    }
    # five clips that agree are one observation, not five: about sqrt(5) = 2.2 times as wide
    assert 1.7 < wider["accuracy"] < 2.8 and 1.5 < wider["macro_f1"] < 3.0, wider
    # every file its own group is the file bootstrap, draw for draw
    assert bootstrap_ci(y, probs, n_boot=50, seed=2, groups=np.arange(500)) == bootstrap_ci(
        y, probs, n_boot=50, seed=2
    )
