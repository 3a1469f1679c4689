"""Leakage audit of train/val/test splits.

Checks, for every fold:

1. ``groups``: no group in two splits;
2. ``exact``: no identical decoded audio in two splits (hash of the samples, so a WAV
   and a FLAC of the same audio match, while file bytes would not);
3. ``near``: no near-duplicates in two splits (the same audio re-encoded, gain-changed,
   resampled or trimmed), found with a robust audio fingerprint
   (:mod:`audioclf.data.fingerprint`);
4. ``pretrained``: no test file whose id is in a list of ids known to be in a
   pretrained model's training data.

Files without audio (unreadable, empty, silent) are listed as not audited, never
counted as duplicates of each other: the features stage skips them too.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from audioclf.config.data import LEVELS, AuditConfig
from audioclf.config.schema import choice
from audioclf.data.fingerprint import fingerprint_files, near_duplicates
from audioclf.data.manifest import Entry
from audioclf.data.split import LeakageError
from audioclf.progress import Progress

log = logging.getLogger(__name__)
MAX_LISTED = 200  # violations written per check; the count is always complete


def audit_folds(
    folds: list[dict[str, list[Entry]]],
    audio_root: Path,
    *,
    exact_level: str = "error",
    near_level: str = "error",
    pretrained_ids: frozenset[str] = frozenset(),
    pretrained_level: str = "error",
    max_ber: float = 0.2,
    leaky: bool = False,
    max_seconds: float = 600.0,
) -> dict:
    """Run the four checks on every fold.

    Args:
        folds: one dict split name -> entries per fold.
        audio_root: folder the manifest paths are relative to.
        exact_level, near_level, pretrained_level: ``error`` fails the audit, ``warn`` only
            reports, ``exclude`` reports and lists the test files to leave out in a second
            scoring (``report["exclude"]``: fold -> paths).
        pretrained_ids: ids (file stem or group) known to be in a pretrained model's
            training data; any in a test split is a violation.
        max_ber: bit error rate under which two fingerprints are the same audio.
        leaky: the split ignored groups on purpose; every check only warns.
        max_seconds: decode at most this much of each file (``audit.max_file_seconds``).

    Returns:
        The report: ``ok``, per check its ``level``, ``count`` and ``violations``, the files
        ``not_audited`` (unreadable, empty, silent) and ``exclude``.
    """
    for key, level in (
        ("audit.exact_duplicates", exact_level),
        ("audit.near_duplicates", near_level),
        ("audit.pretrained_overlap", pretrained_level),
    ):
        choice(level, LEVELS, key)
    entries = {e.path: e for fold in folds for rows in fold.values() for e in rows}
    files = Progress(log, "audit: fingerprinting", len(entries)).wrap(entries.values())
    prints, unreadable = fingerprint_files(files, audio_root, max_seconds)
    by_hash: dict[str, list[str]] = defaultdict(list)
    for path, p in prints.items():
        by_hash[p.sample_hash].append(path)
    same_audio = [
        (a, b) for paths in by_hash.values() for i, a in enumerate(paths) for b in paths[i + 1 :]
    ]
    near = [
        m
        for m in near_duplicates({k: p.words for k, p in prints.items()}, max_ber=max_ber)
        if prints[m["a"]].sample_hash != prints[m["b"]].sample_hash
    ]  # exact ones are reported as exact
    checks = {
        "groups": ("error", []),
        "exact": (exact_level, []),
        "near": (near_level, []),
        "pretrained": (pretrained_level, []),
    }
    for n, fold in enumerate(folds):
        where = {e.path: split for split, rows in fold.items() for e in rows}
        splits_of_group: dict[str, set[str]] = defaultdict(set)
        for path, split in where.items():
            splits_of_group[entries[path].group].add(split)
        checks["groups"][1].extend(
            {"fold": n, "group": g, "splits": sorted(s)}
            for g, s in sorted(splits_of_group.items())
            if len(s) > 1
        )
        checks["exact"][1].extend(
            {"fold": n, "a": a, "a_split": where[a], "b": b, "b_split": where[b]}
            for a, b in same_audio
            if a in where and b in where and where[a] != where[b]
        )
        checks["near"][1].extend(
            {"fold": n, **m, "a_split": where[m["a"]], "b_split": where[m["b"]]}
            for m in near
            if m["a"] in where and m["b"] in where and where[m["a"]] != where[m["b"]]
        )
        checks["pretrained"][1].extend(
            {"fold": n, "path": e.path}
            for e in fold.get("test", ())
            if {Path(e.path).stem, e.group} & pretrained_ids
        )
    report = {
        "leaky": leaky,
        "folds": len(folds),
        "files": len(entries),
        "not_audited": unreadable,
        "near_pairs_found": len(near),
        "checks": {},
        "exclude": {},
    }
    ok = True
    for name, (level, violations) in checks.items():
        level = "warn" if leaky and level == "error" else level
        ok &= not (level == "error" and violations)
        report["checks"][name] = {
            "level": level,
            "count": len(violations),
            "violations": violations[:MAX_LISTED],
        }
        if level == "exclude":
            for v in violations:
                flagged = report["exclude"].setdefault(str(v["fold"]), [])
                flagged += [v[k] for k in ("a", "b", "path") if k in v and _in_test(v, k)]
    report["exclude"] = {n: sorted(set(paths)) for n, paths in report["exclude"].items()}
    report["ok"] = ok
    return report


def _in_test(violation: dict, key: str) -> bool:
    """Whether the file under ``key`` of a violation is the test side (a pretrained id always is)."""
    return key == "path" or violation.get(f"{key}_split") == "test"


def describe_violations(report: dict, limit: int = 10) -> str:
    """One line per failing check, naming the first offending files or groups."""
    lines = []
    for name, check in report["checks"].items():
        if check["level"] != "error" or not check["count"]:
            continue
        shown = []
        for v in check["violations"][:limit]:
            if name == "groups":
                shown.append(f"group {v['group']} in {'/'.join(v['splits'])}")
            elif name == "pretrained":
                shown.append(v["path"])
            else:
                shown.append(f"{v['a']} ({v['a_split']}) ~ {v['b']} ({v['b_split']})")
        lines.append(f"{name}: {check['count']} violation(s), e.g. " + "; ".join(shown))
    return "\n".join(lines)


def audit_with(
    folds: list[dict[str, list[Entry]]], audio_root: Path, cfg: AuditConfig, *, leaky: bool
) -> dict:
    """:func:`audit_folds` with the ``audit`` params."""
    return audit_folds(
        folds,
        audio_root,
        exact_level=cfg.exact_duplicates,
        near_level=cfg.near_duplicates,
        pretrained_ids=frozenset(cfg.pretrained_ids),
        pretrained_level=cfg.pretrained_overlap,
        max_ber=cfg.max_ber,
        leaky=leaky,
        max_seconds=cfg.max_file_seconds,
    )


def conclude(report: dict, report_path: str | Path) -> None:
    """Raise :class:`LeakageError` naming the offending files and the ways on if the audit failed;
    else log its counts."""
    counts = {name: check["count"] for name, check in report["checks"].items()}
    if report["ok"]:
        excluded = sum(len(p) for p in report["exclude"].values())
        log.info(
            "audit: %d files, %d fold(s), violations %s%s%s",
            report["files"],
            report["folds"],
            counts,
            " (LEAKY split: reported, not failed)" if report["leaky"] else "",
            f"; {excluded} test files flagged to score without" if excluded else "",
        )
        return
    raise LeakageError(
        f"leakage audit failed (details in {report_path}):\n{describe_violations(report)}\n"
        "Ways on: remove the copies from the data; or audit.exact_duplicates / "
        "audit.near_duplicates = warn (keep the folds as given, comparable with published "
        "results; the pairs stay in the report and on the MLflow run) or = exclude (also score "
        "each test fold without its flagged files, both in reports/metrics.json); or, for the "
        "holdout, kfold and logo strategies, split.merge_duplicates=true (copies share one "
        "group, so they land on one side). Shared groups (the groups check) always fail: fix "
        "the group column."
    )
