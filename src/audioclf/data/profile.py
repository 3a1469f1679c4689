"""The data's profile: what the manifest says about the audio, before any front-end is chosen.

Sample rates, channels, duration quantiles, class and group counts, read from the
manifest's columns (no audio is decoded). The download stage writes it to
``reports/profile.json`` and logs a short table; the features stage chooses
``auto`` values from it (:func:`audioclf.config.frontends.resolve_auto`) and checks that
the front-end fits it (:mod:`audioclf.features.frontend_fit`).
"""

from __future__ import annotations

import collections
import logging

import numpy as np

from audioclf.data.manifest import Entry

log = logging.getLogger(__name__)
QUANTILES = {"min": 0.0, "p10": 0.1, "p50": 0.5, "p90": 0.9, "max": 1.0}


def _counts(values) -> dict[str, int]:
    """``{value: count}`` sorted by value (as strings: JSON keys)."""
    return {str(k): v for k, v in sorted(collections.Counter(values).items())}


def data_profile(entries: list[Entry]) -> dict:
    """The profile of a manifest's entries.

    Returns:
        ``files``, ``hours``, ``sample_rate`` (``counts`` per rate, ``median`` -- the lower
        median, a rate some file has), ``channels`` (counts), ``duration_s`` (quantiles
        min, p10, p50, p90, max), ``classes`` (files per label), ``n_classes``,
        ``groups`` (number of groups) and ``files_per_group`` (min, p50, max).

    >>> from audioclf.data.manifest import Entry
    >>> p = data_profile([Entry("a.wav", "x", "g", 0.5, 8000, 1, ""), Entry("b.wav", "y", "g", 1.5, 16000, 2, "")])
    >>> p["sample_rate"], p["duration_s"]["p50"], p["groups"]
    ({'counts': {'8000': 1, '16000': 1}, 'median': 8000}, 1.0, 1)
    """
    if not entries:
        return {"files": 0, "hours": 0.0, "classes": {}, "n_classes": 0, "groups": 0}
    rates = sorted(e.sample_rate for e in entries)
    durations = np.array([e.duration for e in entries], dtype=np.float64)
    per_group = np.array(list(collections.Counter(e.group for e in entries).values()))
    return {
        "files": len(entries),
        "hours": round(float(durations.sum()) / 3600, 4),
        "sample_rate": {"counts": _counts(rates), "median": rates[(len(rates) - 1) // 2]},
        "channels": _counts(e.channels for e in entries),
        "duration_s": {k: round(float(np.quantile(durations, q)), 4) for k, q in QUANTILES.items()},
        "classes": dict(sorted(collections.Counter(e.label for e in entries).items())),
        "n_classes": len({e.label for e in entries}),
        "groups": len(per_group),
        "files_per_group": {
            "min": int(per_group.min()),
            "p50": float(np.median(per_group)),
            "max": int(per_group.max()),
        },
    }


def profile_table(profile: dict) -> str:
    """A few lines for the log: rates, channels, durations, classes and groups."""
    if not profile["files"]:
        return "profile: no files"
    d, classes = profile["duration_s"], profile["classes"]
    rates = ", ".join(f"{r} Hz x{n}" for r, n in profile["sample_rate"]["counts"].items())
    channels = ", ".join(f"{c} ch x{n}" for c, n in profile["channels"].items())
    lines = [
        f"files        {profile['files']} ({profile['hours']:.2f} h)",
        f"sample rates {rates}",
        f"channels     {channels}",
        "duration s   " + "  ".join(f"{k} {v:g}" for k, v in d.items()),
        f"classes      {profile['n_classes']} (files per class {min(classes.values())}"
        f"..{max(classes.values())})",
        f"groups       {profile['groups']} (files per group {profile['files_per_group']['min']}"
        f"..{profile['files_per_group']['max']})",
    ]
    return "\n".join(lines)


def log_profile(profile: dict) -> None:
    for line in profile_table(profile).splitlines():
        log.info("profile: %s", line)
