"""Differences over several seeds: run i of B against run i of A, for each seed i.

Two sources of noise stand between a measured difference and a real one: the training
seed (initialisation, shuffling, augmentation, dropout) and the sample of test files.
:func:`across_seeds` measures the first: the mean of the per-seed differences with
Student's t interval over the seeds (on the test files these runs share, it says
nothing of the files' sampling). :func:`files_bootstrap` measures the second: every
resample draws each distinct test set once (its groups, each with all its files) and applies that draw to every run scored
on it (paired runs share it), and the statistic is the mean difference over the seeds.
A difference that survives both is one a reviewer accepts.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from audioclf.evaluation.bootstrap import draw_groups, group_members
from audioclf.evaluation.metrics import headline
from audioclf.evaluation.paired import Difference, check_settings, percentile_interval
from audioclf.evaluation.predictions import FilePredictions


def across_seeds(per_seed: list[Difference], level: float = 0.95) -> Difference:
    """The mean of per-seed differences with Student's t interval (df = n − 1) over the seeds.

    Args:
        per_seed: run i of B against run i of A, for each seed i (at least two).
        level: coverage of the interval.

    Returns:
        the means of ``a``, ``b`` and ``diff``, and the interval of the mean difference.

    >>> d = across_seeds([Difference(.5, .5 + x, x, 0, 0) for x in (.01, .02, .03)])
    >>> round(d.b, 4), round(d.diff, 4), round(d.low, 4), round(d.high, 4)
    (0.52, 0.02, -0.0048, 0.0448)
    """
    if len(per_seed) < 2:
        raise ValueError(f"an interval across seeds needs at least two seeds, got {len(per_seed)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    diffs = np.array([d.diff for d in per_seed])
    mean = float(diffs.mean())
    se = diffs.std(ddof=1) / np.sqrt(len(diffs))
    half = float(stats.t.ppf((1 + level) / 2, len(diffs) - 1) * se)
    a = float(np.mean([d.a for d in per_seed]))
    b = float(np.mean([d.b for d in per_seed]))
    return Difference(a, b, mean, mean - half, mean + half)


def files_bootstrap(
    pairs: list[tuple[FilePredictions, FilePredictions]],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    ece_bins: int = 15,
    bucket_of: list[tuple[np.ndarray | None, np.ndarray | None]] | None = None,
) -> dict[str, Difference]:
    """The mean over the (A, B) pairs of each metric's difference B − A, with a percentile
    interval over resamples of the test files.

    Runs scored on the same set of files (the baseline's seeds, and each phase run paired
    with them) see the same draw of those files in a resample; runs on another set (a
    leaky split) get their own draw, so an unpaired pair stays unpaired.

    Args:
        pairs: (A, B) predictions per seed.
        n_boot: resamples.
        level: coverage of the interval.
        seed: makes the interval reproducible.
        ece_bins: bins of the expected calibration error.
        bucket_of: per pair, the (C,) buckets of A's and B's classes (to add ``<bucket>_macro_f1``).
    """
    check_settings(n_boot, level)
    if not pairs:
        raise ValueError("no pairs to compare")
    buckets = bucket_of or [(None, None)] * len(pairs)
    runs = [run for pair in pairs for run in pair]
    sets: dict[frozenset, FilePredictions] = {}
    for run in runs:
        sets.setdefault(frozenset(run.paths), run)
    # each run's rows in the order of its set's reference run, so one draw indexes them all
    aligned = [run.reordered(sets[frozenset(run.paths)].paths) for run in runs]
    keys = [list(sets).index(frozenset(run.paths)) for run in runs]
    rng = np.random.default_rng(seed)

    def scores(draws: list[np.ndarray] | None) -> dict[str, tuple[list[float], list[float]]]:
        """metric -> (A's values, B's values), one per pair, on the drawn files (None: all)."""
        out: dict[str, tuple[list[float], list[float]]] = {}
        for i, (bucket_a, bucket_b) in enumerate(buckets):
            a, b = aligned[2 * i], aligned[2 * i + 1]
            ia = draws[keys[2 * i]] if draws else slice(None)
            ib = draws[keys[2 * i + 1]] if draws else slice(None)
            ma = headline(a.y_true[ia], a.probs[ia], ece_bins=ece_bins, bucket_of=bucket_a)
            mb = headline(b.y_true[ib], b.probs[ib], ece_bins=ece_bins, bucket_of=bucket_b)
            for m in ma.keys() & mb.keys():
                out.setdefault(m, ([], []))
                out[m][0].append(ma[m])
                out[m][1].append(mb[m])
        return {m: v for m, v in out.items() if len(v[0]) == len(pairs)}

    members = {k: group_members(ref.groups, len(ref.y_true)) for k, ref in sets.items()}
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        draws = [draw_groups(rng, members[k], ref.y_true) for k, ref in sets.items()]
        for m, (va, vb) in scores(draws).items():
            samples.setdefault(m, []).append(float(np.mean(vb) - np.mean(va)))
    out = {}
    for m, (va, vb) in scores(None).items():
        if m in samples:
            a, b = float(np.mean(va)), float(np.mean(vb))
            diff = float(np.mean(np.subtract(vb, va)))
            out[m] = Difference(a, b, diff, *percentile_interval(samples[m], level))
    return out
