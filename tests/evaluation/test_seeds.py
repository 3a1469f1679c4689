"""Differences over seeds: Student's t across seeds, and the bootstrap of the shared test files."""

import math

import numpy as np
import pytest
from tests.evaluation.test_paired import _put_right, _run

from audioclf.evaluation.paired import Difference, paired_bootstrap, unpaired_bootstrap
from audioclf.evaluation.predictions import FilePredictions
from audioclf.evaluation.seeds import across_seeds, files_bootstrap


def test_across_seeds_golden():
    d = across_seeds([Difference(0.5, 0.5 + x, x, 0, 0) for x in (1.0, 2.0, 3.0)], level=0.95)
    half = 4.302652729749464 / math.sqrt(3)  # t(0.975, df=2) * sd 1 / sqrt(3)
    assert d.diff == 2.0 and d.a == 0.5 and d.b == 2.5
    assert d.low == pytest.approx(2 - half, abs=1e-12)
    assert d.high == pytest.approx(2 + half, abs=1e-12)
    zero = across_seeds([Difference(0.5, 0.5, 0.0, 0, 0)] * 3)
    assert (zero.diff, zero.low, zero.high, zero.significant) == (0.0, 0.0, 0.0, False)
    with pytest.raises(ValueError, match="at least two seeds, got 1"):
        across_seeds([zero])


def test_one_pair_is_the_pairs_own_bootstrap():
    a, b = _run(seed=1), _run(seed=2, accuracy=0.8)
    assert files_bootstrap([(a, b)], n_boot=200, seed=3) == paired_bootstrap(
        a.y_true, a.probs, b.probs, n_boot=200, seed=3
    )
    other = _run(seed=4, paths=[f"o{i}" for i in range(120)])
    assert files_bootstrap([(a, other)], n_boot=200, seed=3) == unpaired_bootstrap(
        a.y_true, a.probs, other.y_true, other.probs, n_boot=200, seed=3
    )


def test_shared_files_are_drawn_once_for_every_run():
    base = [_run(seed=s) for s in (10, 11, 12)]
    better = [_put_right(r, np.flatnonzero(~r.correct)[:30]) for r in base]
    pairs = list(zip(base, better, strict=True))
    got = files_bootstrap(pairs, n_boot=150, seed=5)["accuracy"]
    # the same computed directly: one draw of the 120 files per resample, mean over the seeds
    rng = np.random.default_rng(5)
    y, diffs = base[0].y_true, []
    while len(diffs) < 150:
        idx = rng.integers(0, len(y), len(y))
        if np.all(y[idx] == y[idx[0]]):
            continue
        diffs.append(np.mean([(b.correct[idx].mean() - a.correct[idx].mean()) for a, b in pairs]))
    assert got.low == pytest.approx(np.percentile(diffs, 2.5), abs=1e-12)
    assert got.high == pytest.approx(np.percentile(diffs, 97.5), abs=1e-12)
    assert got.diff == pytest.approx(30 / 120) and got.significant
    assert got.a == pytest.approx(np.mean([r.correct.mean() for r in base]))


def test_runs_against_themselves_over_seeds_are_zero():
    runs = [_run(seed=s) for s in (20, 21)]
    for d in files_bootstrap([(r, r) for r in runs], n_boot=100).values():
        assert (d.diff, d.low, d.high, d.significant) == (0.0, 0.0, 0.0, False)


def test_rows_in_another_order_are_aligned_by_path():
    a, b = _run(seed=30), _run(seed=31, accuracy=0.8)
    order = np.arange(len(b.paths))[::-1]
    flipped = FilePredictions(
        tuple(b.paths[i] for i in order), b.folds[order], b.y_true[order], b.probs[order], b.labels
    )
    assert files_bootstrap([(a, flipped), (a, b)], n_boot=50) == files_bootstrap(
        [(a, b), (a, b)], n_boot=50
    )
