"""Paired comparisons: golden values on hand-made predictions, a run against itself, a planted gap."""

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from audioclf.evaluation.metrics import HEADLINE, headline
from audioclf.evaluation.paired import (
    ComparisonError,
    compare_runs,
    mcnemar_exact,
    paired_bootstrap,
    unpaired_bootstrap,
)
from audioclf.evaluation.predictions import FilePredictions
from audioclf.experiments.compare import method


def _run(n=120, c=4, accuracy=0.6, seed=0, paths=None):
    """Hand-made predictions: the true class scored highest on about ``accuracy`` of the files."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    probs = rng.dirichlet(np.ones(c), n).astype(np.float32)
    right = rng.random(n) < accuracy
    top = np.where(right, y, (y + 1 + rng.integers(0, c - 1, n)) % c)
    probs[np.arange(n), top] += 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    names = tuple(paths or (f"f{i}.wav" for i in range(n)))
    return FilePredictions(names, np.zeros(n, int), y, probs, tuple("abcd"[:c]))


def _put_right(run, rows):
    """``run`` with the files at ``rows`` classified right (their true class made the top one)."""
    probs = run.probs.copy()
    probs[rows, run.y_true[rows]] += 2.0
    probs /= probs.sum(axis=1, keepdims=True)
    return FilePredictions(run.paths, run.folds, run.y_true, probs, run.labels)


def _binomial_two_sided(b, c):
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


@pytest.mark.parametrize(
    "only_a, only_b, p",
    [(1, 9, 22 / 1024), (0, 6, 2 / 64), (0, 5, 2 / 32), (5, 5, 1.0), (0, 0, 1.0), (7, 2, None)],
)
def test_mcnemar_exact_golden(only_a, only_b, p):
    both, neither = 4, 3
    a = np.array([1] * only_a + [0] * only_b + [1] * both + [0] * neither, bool)
    b = np.array([0] * only_a + [1] * only_b + [1] * both + [0] * neither, bool)
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (only_a, only_b)
    assert result.p == pytest.approx(p if p is not None else _binomial_two_sided(7, 2), rel=1e-12)


def test_mcnemar_needs_the_same_files():
    with pytest.raises(ValueError, match="same files"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


def _reference_paired(y, pa, pb, n_boot, seed, level, statistic):
    """The paired percentile bootstrap written out directly: one draw of files, both runs scored."""
    rng = np.random.default_rng(seed)
    diffs = []
    while len(diffs) < n_boot:
        idx = rng.integers(0, len(y), len(y))
        if np.all(y[idx] == y[idx[0]]):
            continue
        diffs.append(statistic(y[idx], pb[idx]) - statistic(y[idx], pa[idx]))
    tail = (1 - level) / 2 * 100
    return np.percentile(diffs, tail), np.percentile(diffs, 100 - tail)


def _accuracy(y, p):
    return float(np.mean(p.argmax(axis=1) == y))


def _macro_f1(y, p):
    pred = p.argmax(axis=1)
    return float(f1_score(y, pred, labels=np.unique(np.r_[y, pred]), average="macro"))


@pytest.mark.parametrize("metric, statistic", [("accuracy", _accuracy), ("macro_f1", _macro_f1)])
def test_paired_bootstrap_equals_the_reference(metric, statistic):
    a, b = _run(60, seed=1), _run(60, accuracy=0.8, seed=2)
    got = paired_bootstrap(a.y_true, a.probs, b.probs, n_boot=300, level=0.9, seed=7)[metric]
    low, high = _reference_paired(a.y_true, a.probs, b.probs, 300, 7, 0.9, statistic)
    assert got.low == pytest.approx(low, abs=1e-12) and got.high == pytest.approx(high, abs=1e-12)
    assert got.a == pytest.approx(statistic(a.y_true, a.probs), abs=1e-12)
    assert got.diff == pytest.approx(got.b - got.a, abs=1e-15)


def test_hand_made_golden_intervals():
    # 4 files, 2 classes; A gets only file 0 right, B gets every file right
    y = np.array([0, 0, 1, 1])
    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    b = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9], [0.3, 0.7]])
    d = paired_bootstrap(y, a, b, n_boot=400, seed=3)
    assert (d["accuracy"].a, d["accuracy"].b, d["accuracy"].diff) == (0.25, 1.0, 0.75)
    # a resample holds k copies of file 0 (A right) out of 4: the difference is (4 - k) / 4
    assert d["accuracy"].high == 1.0 and d["accuracy"].low in (0.25, 0.5)
    assert d["accuracy"].significant
    everything_wrong = np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    d = paired_bootstrap(y, everything_wrong, b, n_boot=100, seed=0)["accuracy"]
    assert (d.diff, d.low, d.high) == (1.0, 1.0, 1.0)  # every resample: all of B right, none of A


def test_a_run_against_itself_differs_by_exactly_zero():
    a = _run()
    comparison = compare_runs(a, a, n_boot=200)
    assert comparison.paired and comparison.mcnemar.p == 1.0
    assert comparison.mcnemar.only_a == comparison.mcnemar.only_b == 0
    assert set(HEADLINE) <= set(comparison.differences)
    for metric, d in comparison.differences.items():
        assert (d.diff, d.low, d.high) == (0.0, 0.0, 0.0), metric
        assert not d.significant


def test_a_planted_clearly_better_run_is_significant_and_a_small_change_is_not():
    a = _run(200, seed=4)
    wrong = np.flatnonzero(~a.correct)
    c = compare_runs(a, _put_right(a, wrong[:50]), n_boot=300, seed=1)  # 50 mistakes put right
    assert c.mcnemar.only_a == 0 and c.mcnemar.only_b == 50 and c.mcnemar.p < 1e-12
    for metric in ("accuracy", "macro_f1", "balanced_accuracy"):
        assert c.differences[metric].significant and c.differences[metric].low > 0, metric
    assert c.differences["accuracy"].diff == pytest.approx(50 / 200)
    small = compare_runs(a, _put_right(a, wrong[:2]))  # two files: inside the noise
    assert not small.differences["accuracy"].significant and small.mcnemar.p == 0.5


def test_pairs_by_path_whatever_the_row_order():
    a, b = _run(seed=5), _run(accuracy=0.7, seed=6)
    order = np.random.default_rng(0).permutation(len(b.paths))
    shuffled = FilePredictions(
        tuple(b.paths[i] for i in order), b.folds[order], b.y_true[order], b.probs[order], b.labels
    )
    assert compare_runs(a, shuffled, n_boot=100) == compare_runs(a, b, n_boot=100)


def test_different_test_files_are_compared_unpaired():
    a = _run(seed=8)
    renamed = FilePredictions(
        tuple("other/" + p for p in a.paths), a.folds, a.y_true, a.probs, a.labels
    )
    c = compare_runs(a, renamed, n_boot=300)
    assert not c.paired and c.mcnemar is None
    d = c.differences["accuracy"]
    assert d.diff == 0.0 and d.low < 0 < d.high  # the same scores, but two independent samples
    strong = _run(seed=9, accuracy=0.97, paths=[f"s{i}" for i in range(120)])
    gap = compare_runs(a, strong, n_boot=300).differences["accuracy"]
    assert gap.significant and gap.low > 0.2
    direct = unpaired_bootstrap(a.y_true, a.probs, strong.y_true, strong.probs, n_boot=300)
    assert direct["accuracy"] == gap


def test_runs_that_cannot_be_compared_say_why():
    a = _run(c=4)
    with pytest.raises(ComparisonError, match="different classes"):
        compare_runs(a, _run(c=3))
    flipped = FilePredictions(a.paths, a.folds, (a.y_true + 1) % 4, a.probs, a.labels)
    with pytest.raises(ComparisonError, match="'f0.wav' has a different true class"):
        compare_runs(a, flipped)


def test_buckets_are_compared_when_given():
    a, b = _run(seed=10), _run(seed=11, accuracy=0.9)
    bucket_of = np.array(["head", "head", "tail", "tail"])
    d = paired_bootstrap(a.y_true, a.probs, b.probs, n_boot=100, bucket_of=bucket_of)
    expected = headline(a.y_true, b.probs, bucket_of=bucket_of)["tail_macro_f1"]
    assert d["tail_macro_f1"].b == pytest.approx(expected, abs=1e-12)


def test_bad_arguments():
    a = _run()
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        paired_bootstrap(a.y_true, a.probs, a.probs, n_boot=0)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        paired_bootstrap(a.y_true, a.probs, a.probs, level=1.0)
    with pytest.raises(ValueError, match="need the same files"):
        paired_bootstrap(a.y_true, a.probs, a.probs[:-1])


def test_groups_are_resampled_whole_in_paired_and_unpaired_comparisons():
    # B puts right whole recordings of 4 files that A gets wrong: 12 recordings, 48 files
    a = _run(240, seed=11)
    groups = tuple(f"rec{i // 4}" for i in range(240))
    a = FilePredictions(a.paths, a.folds, a.y_true, a.probs, a.labels, groups)
    wrong = np.flatnonzero(~a.correct)
    recordings = sorted({groups[i] for i in wrong})[:12]
    b = _put_right(a, [i for i in range(240) if groups[i] in recordings])
    b = FilePredictions(b.paths, b.folds, b.y_true, b.probs, b.labels, groups)
    grouped = compare_runs(a, b, n_boot=400, seed=2)
    assert grouped.groups_a == 60 and "60 groups" in method(grouped)
    by_group = grouped.differences["accuracy"]
    by_file = compare_runs(
        FilePredictions(a.paths, a.folds, a.y_true, a.probs, a.labels),
        FilePredictions(b.paths, b.folds, b.y_true, b.probs, b.labels),
        n_boot=400,
        seed=2,
    ).differences["accuracy"]
    assert by_group.diff == by_file.diff
    # the same gain, made of recordings: the interval is wider than the files' one
    assert (by_group.high - by_group.low) > 1.4 * (by_file.high - by_file.low)
    # two runs whose files are right or wrong a recording at a time, compared unpaired
    ya, pa, ga = _clustered(seed=12)
    yb, pb, gb = _clustered(seed=13)
    unpaired = unpaired_bootstrap(ya, pa, yb, pb, n_boot=300, groups_a=ga, groups_b=gb)
    files = unpaired_bootstrap(ya, pa, yb, pb, n_boot=300)
    width = {
        m: (unpaired[m].high - unpaired[m].low) / (files[m].high - files[m].low)
        for m in ("accuracy", "macro_f1")
    }
    assert min(width.values()) > 1.4, width


def _clustered(n=240, size=4, seed=0):
    """(y, probs, groups): recordings of ``size`` files, each recording right or wrong whole."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    right = np.repeat(rng.random(n // size) < 0.6, size)
    probs = 0.1 + 0.6 * np.eye(4)[np.where(right, y, (y + 1) % 4)]
    return y, probs / probs.sum(axis=1, keepdims=True), np.arange(n) // size
