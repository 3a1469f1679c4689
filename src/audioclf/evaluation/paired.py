"""Is run B better than run A on the test files, or inside the noise? Differences of the
headline metrics with bootstrap intervals, McNemar's exact test, and the spread over seeds.

**Paired** (both runs scored the same test files): every resample draws the files' groups
(recordings, speakers; files where the probabilities hold none) with replacement, each with
all its files, and scores *both* runs' predictions of those files, so what the two runs
share (the hard and the easy files) cancels in the difference; the interval is the
percentile interval of B − A over the resamples. McNemar's exact test asks whether the
files only A gets right and those only B gets right are equally many (a binomial test
with p = ½ on the discordant files). **Unpaired** (different test files, e.g. a leaky
split against a grouped one): each run's groups are resampled on their own; McNemar
does not apply. Over several seeds: :mod:`audioclf.evaluation.seeds`.

The metrics are :func:`audioclf.evaluation.metrics.headline`'s, the same as
``reports/metrics.json`` holds, and a resample holding a single class is drawn again,
as :func:`audioclf.evaluation.bootstrap.bootstrap_ci` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from audioclf.errors import UserError
from audioclf.evaluation.bootstrap import draw_groups, group_members
from audioclf.evaluation.metrics import headline
from audioclf.evaluation.predictions import FilePredictions


class ComparisonError(UserError, ValueError):
    """Two runs cannot be compared: different classes, or one file with two true classes."""


@dataclass(frozen=True)
class Difference:
    """One metric of two runs: ``a``, ``b``, ``diff`` = b − a and its interval [``low``, ``high``]."""

    a: float
    b: float
    diff: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero."""
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test: files only A classifies right, only B does, and the two-sided p-value."""

    only_a: int
    only_b: int
    p: float


@dataclass(frozen=True)
class Comparison:
    """B against A: ``paired`` (same test files) or not, the files of each, each metric's
    :class:`Difference` at ``level`` from ``n_boot`` resamples, McNemar (paired only), and the
    groups A's files came in (what was resampled; None: the files themselves)."""

    paired: bool
    n_a: int
    n_b: int
    level: float
    n_boot: int
    differences: dict[str, Difference]
    mcnemar: McNemar | None
    groups_a: int | None = None


def percentile_interval(values: list[float], level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap values."""
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def check_settings(n_boot: int, level: float) -> None:
    """Resamples and level a bootstrap can use, else ValueError naming the bad one."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def paired_bootstrap(
    y_true: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    ece_bins: int = 15,
    bucket_of: np.ndarray | None = None,
    groups: np.ndarray | tuple | None = None,
) -> dict[str, Difference]:
    """Each metric's difference B − A over the same files, with a paired percentile interval.

    Args:
        y_true: (N,) class indices, at least two distinct.
        probs_a, probs_b: (N, C) each run's probabilities of the same N files.
        n_boot: resamples of the files' groups.
        level: coverage of the interval.
        seed: makes the interval reproducible.
        ece_bins: bins of the expected calibration error.
        bucket_of: (C,) bucket of each class, to add ``<bucket>_macro_f1``.
        groups: (N,) each file's group, resampled whole (None: every file its own).

    >>> y = np.array([0, 0, 1, 1])
    >>> a = np.array([[.9, .1], [.2, .8], [.3, .7], [.6, .4]])
    >>> d = paired_bootstrap(y, a, a, n_boot=50)["accuracy"]
    >>> d.diff, d.low, d.high, d.significant
    (0.0, 0.0, 0.0, False)
    """
    check_settings(n_boot, level)
    if probs_a.shape != probs_b.shape or len(y_true) != len(probs_a):
        raise ValueError(
            f"paired runs need the same files: y_true {y_true.shape}, A {probs_a.shape}, B {probs_b.shape}"
        )
    if len(np.unique(y_true)) < 2:
        raise ValueError("the bootstrap needs at least two classes in y_true")
    rng = np.random.default_rng(seed)
    members = group_members(groups, len(y_true))
    kw = {"ece_bins": ece_bins, "bucket_of": bucket_of}
    diffs: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = draw_groups(rng, members, y_true)
        a, b = headline(y_true[idx], probs_a[idx], **kw), headline(y_true[idx], probs_b[idx], **kw)
        for m in a.keys() & b.keys():
            diffs.setdefault(m, []).append(b[m] - a[m])
    whole_a, whole_b = headline(y_true, probs_a, **kw), headline(y_true, probs_b, **kw)
    return {
        m: Difference(
            whole_a[m], whole_b[m], whole_b[m] - whole_a[m], *percentile_interval(diffs[m], level)
        )
        for m in whole_a
        if m in whole_b and m in diffs
    }


def unpaired_bootstrap(
    y_a: np.ndarray,
    probs_a: np.ndarray,
    y_b: np.ndarray,
    probs_b: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    ece_bins: int = 15,
    bucket_of_a: np.ndarray | None = None,
    bucket_of_b: np.ndarray | None = None,
    groups_a: np.ndarray | tuple | None = None,
    groups_b: np.ndarray | tuple | None = None,
) -> dict[str, Difference]:
    """Each metric's difference B − A over different test files: each run's groups (files,
    where ``groups_*`` is None) resampled on their own."""
    check_settings(n_boot, level)
    for y in (y_a, y_b):
        if len(np.unique(y)) < 2:
            raise ValueError("the bootstrap needs at least two classes in each run's y_true")
    rng = np.random.default_rng(seed)
    members_a, members_b = group_members(groups_a, len(y_a)), group_members(groups_b, len(y_b))
    diffs: dict[str, list[float]] = {}
    for _ in range(n_boot):
        ia, ib = draw_groups(rng, members_a, y_a), draw_groups(rng, members_b, y_b)
        a = headline(y_a[ia], probs_a[ia], ece_bins=ece_bins, bucket_of=bucket_of_a)
        b = headline(y_b[ib], probs_b[ib], ece_bins=ece_bins, bucket_of=bucket_of_b)
        for m in a.keys() & b.keys():
            diffs.setdefault(m, []).append(b[m] - a[m])
    whole_a = headline(y_a, probs_a, ece_bins=ece_bins, bucket_of=bucket_of_a)
    whole_b = headline(y_b, probs_b, ece_bins=ece_bins, bucket_of=bucket_of_b)
    return {
        m: Difference(
            whole_a[m], whole_b[m], whole_b[m] - whole_a[m], *percentile_interval(diffs[m], level)
        )
        for m in whole_a
        if m in whole_b and m in diffs
    }


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's exact test on per-file correctness of two runs on the same files.

    >>> r = mcnemar_exact(np.array([1, 0] + [0] * 9, bool), np.array([0, 0] + [1] * 9, bool))
    >>> r.only_a, r.only_b, r.p
    (1, 9, 0.021484375)
    """
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(
            f"both runs need the same files, got {correct_a.shape} and {correct_b.shape}"
        )
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((correct_b & ~correct_a).sum())
    if only_a + only_b == 0:
        return McNemar(0, 0, 1.0)
    return McNemar(only_a, only_b, float(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue))


def compare_runs(
    a: FilePredictions,
    b: FilePredictions,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    ece_bins: int = 15,
    bucket_of_a: np.ndarray | None = None,
    bucket_of_b: np.ndarray | None = None,
) -> Comparison:
    """B against A: paired when both scored the same set of files, else unpaired.

    Raises:
        ComparisonError: the runs have different classes, or a file has a different true
            class in each.
    """
    if a.labels != b.labels:
        raise ComparisonError(
            f"the runs have different classes ({len(a.labels)}: {list(a.labels[:3])}... and "
            f"{len(b.labels)}: {list(b.labels[:3])}...); compare runs on the same dataset"
        )
    kw = {"n_boot": n_boot, "level": level, "seed": seed, "ece_bins": ece_bins}
    if set(a.paths) == set(b.paths):
        b = b.reordered(a.paths)
        if not np.array_equal(a.y_true, b.y_true):
            first = a.paths[int(np.flatnonzero(a.y_true != b.y_true)[0])]
            raise ComparisonError(
                f"file {first!r} has a different true class in each run; "
                "compare runs on the same dataset (same data.* and seed)"
            )
        differences = paired_bootstrap(
            a.y_true, a.probs, b.probs, bucket_of=bucket_of_a, groups=a.groups, **kw
        )
        test = mcnemar_exact(a.correct, b.correct)
        return Comparison(
            True, len(a.paths), len(b.paths), level, n_boot, differences, test, _count(a.groups)
        )
    differences = unpaired_bootstrap(
        a.y_true,
        a.probs,
        b.y_true,
        b.probs,
        bucket_of_a=bucket_of_a,
        bucket_of_b=bucket_of_b,
        groups_a=a.groups,
        groups_b=b.groups,
        **kw,
    )
    return Comparison(
        False, len(a.paths), len(b.paths), level, n_boot, differences, None, _count(a.groups)
    )


def _count(groups: tuple[str, ...] | None) -> int | None:
    return None if groups is None else len(set(groups))
