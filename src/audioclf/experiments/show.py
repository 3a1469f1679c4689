"""``dvc exp show`` as a phase table that fits a screen: what was run and how it scored.

DVC has no setting for the default columns of ``dvc exp show`` (its ``exp`` config
section holds no display options); it has ``--only-changed``, and ``--drop`` and ``--keep``
regexes, ``--keep`` winning. This command shows the params that differ between the rows
shown (``--only-changed``: what each phase set), always the identity params and headline test
metrics below (:data:`KEEP`), and no other metric (the intervals, per-fold and per-bucket
figures are in ``reports/metrics.json`` and ``audioclf report``):

    audioclf show             # the table
    audioclf show --md        # any dvc exp show option passes through (-A, --csv, --sort-by ...)
    audioclf show --all       # plain dvc exp show, every column
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from audioclf.io import repo_root

# columns always kept: experiment identity, the params that name a run, the headline test metrics
KEEP = (
    "Experiment",
    "Created",
    "State",
    "dataset",
    "model",
    "loss",
    "seed",
    r"test\.(accuracy|macro_f1|macro_map)",
    r"test_std\.macro_f1",
    r"buckets\.tail\.macro_f1",
)


def param_sections(params_file: Path) -> list[str]:
    """The top-level keys of the params file: the columns that are params, not metrics."""
    try:
        return sorted(yaml.safe_load(params_file.read_text()) or {})
    except (OSError, yaml.YAMLError):
        return []


def exp_show_command(extra: list[str], sections: list[str] = ()) -> list[str]:
    """The ``dvc exp show`` command line. A column is kept if its name (maybe ``file:``-prefixed)
    matches :data:`KEEP`; otherwise it is shown only if it is a param (its first part one of
    ``sections``, the params file's top-level keys) whose value differs between the rows.

    >>> exp_show_command(["--md"], ["model", "train"])[:6]
    ['dvc', 'exp', 'show', '--only-changed', '--drop', '^(?!(?:model|train)(?:\\\\.|$)).*$']
    """
    if "--all" in extra:
        return ["dvc", "exp", "show", *[a for a in extra if a != "--all"]]
    # the table merges the revision into "Experiment"; CSV keeps it apart, in "rev"
    keep = "^(.*:)?(" + "|".join(KEEP + (("rev",) if "--csv" in extra else ())) + ")$"
    names = "|".join(re.escape(s) for s in sections) or "$^"
    drop = rf"^(?!(?:{names})(?:\.|$)).*$"  # every column that is not a param: the metrics
    return ["dvc", "exp", "show", "--only-changed", "--drop", drop, "--keep", keep, *extra]


def main(argv: list[str]) -> int:
    sections = param_sections(repo_root() / "params.yaml")
    return subprocess.run(exp_show_command(argv, sections)).returncode
