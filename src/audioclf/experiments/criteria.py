"""Success criteria of a phase report: ``--target KEY=VALUE`` thresholds on a run's numbers.

A criterion is met when the value is at least the threshold, at most for ECE and losses
(lower is better); ``KEY>=VALUE`` and ``KEY<=VALUE`` say the direction explicitly. KEY
is a path in reports/metrics.json (``test.macro_f1``, ``buckets.tail.macro_f1``,
``test_ci.macro_f1.low``) or ``train.<metric>``/``val.<metric>`` at the best epoch (the
mean over folds for cross-validation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from audioclf.errors import UserError
from audioclf.experiments.report_sections import RunRecord, at_epoch

LOWER_IS_BETTER = ("ece", "loss")


class TargetError(UserError, ValueError):
    """A ``--target`` that is malformed or names no number of the run."""


@dataclass(frozen=True)
class Target:
    """A success criterion: ``key`` (a number of the run) ``op`` (``>=`` or ``<=``) ``threshold``."""

    key: str
    op: str
    threshold: float


def parse_target(text: str) -> Target:
    """``test.macro_f1=0.25`` (at least; at most for ECE and losses), or with ``>=``/``<=``.

    >>> parse_target("test.macro_f1=0.25"), parse_target("test.ece=0.1").op
    (Target(key='test.macro_f1', op='>=', threshold=0.25), '<=')
    """
    m = re.fullmatch(r"\s*([\w.]+)\s*(>=|<=|=)\s*(\S+)\s*", text)
    try:
        threshold = float(m.group(3)) if m else None
    except ValueError:
        threshold = None
    if m is None or threshold is None:
        raise TargetError(
            f"--target {text!r}: expected KEY=NUMBER (or KEY>=NUMBER, KEY<=NUMBER), "
            "e.g. test.macro_f1=0.25"
        )
    key, op = m.group(1), m.group(2)
    if op == "=":
        op = "<=" if key.rsplit(".", 1)[-1].endswith(LOWER_IS_BETTER) else ">="
    return Target(key, op, threshold)


def target_value(r: RunRecord, key: str) -> float:
    """The run's number named ``key``: a path in metrics.json, or ``train.``/``val.`` at the
    best epoch (the mean over folds for cross-validation)."""
    split, _, metric = key.partition(".")
    if split in ("train", "val") and metric:
        values = [
            at_epoch(r.histories.get(n, []), res.get("best_epoch")).get(f"{split}_{metric}")
            for n, res in r.fold_results().items()
        ]
        if values and all(isinstance(v, float) for v in values):
            return sum(values) / len(values)
    node = r.metrics
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return float(node)
    raise TargetError(
        f"--target {key}: {r.name} has no number of that name; use a path in reports/metrics.json "
        "(test.macro_f1, buckets.tail.macro_f1, test_ci.accuracy.low) or train./val. with "
        "loss, accuracy or macro_f1"
    )


def criteria(r: RunRecord, targets: list[Target]) -> list[str]:
    """The success criteria table and its tally."""
    lines = ["| criterion | value | result |", "|---|---:|---|"]
    met = 0
    for t in targets:
        v = target_value(r, t.key)
        ok = v >= t.threshold if t.op == ">=" else v <= t.threshold
        met += ok
        sign = "≥" if t.op == ">=" else "≤"
        lines.append(
            f"| `{t.key}` {sign} {t.threshold:g} | {v:.4f} | {'met' if ok else '**missed**'} |"
        )
    return lines + ["", f"{met} of {len(targets)} criteria met."]
