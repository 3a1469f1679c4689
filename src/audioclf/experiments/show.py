"""``dvc exp show`` with the columns that matter: what was run and how it scored.

DVC has no setting for the default columns of ``dvc exp show`` (its ``exp`` config
section holds no display options); it has ``--drop`` and ``--keep`` regexes, ``--keep``
winning. This command drops every column and keeps those below:

    audioclf show             # the table
    audioclf show --md        # any dvc exp show option passes through (-A, --csv, --sort-by ...)
    audioclf show --all       # plain dvc exp show, every column
"""

from __future__ import annotations

import subprocess

# columns kept: experiment identity, then params (what was run), then test metrics
KEEP = (
    "Experiment",
    "Created",
    "State",
    "Executor",
    "dataset",
    "model",
    "loss",
    "seed",
    r"train\.seed",
    "split.strategy",
    r"split\.leaky",
    r"loss_params\.weighted_ce\.weights",
    r"augment\.[a-z_]+\.p",  # switches, where this checkout has them
    r"test\.(accuracy|macro_f1|macro_map)",
    r"test_std\.macro_f1",
    r"buckets\.tail\.macro_f1",
)


def exp_show_command(extra: list[str]) -> list[str]:
    """The ``dvc exp show`` command line; a column is kept if its name (maybe ``file:``-prefixed)
    matches.

    >>> exp_show_command(["--md"])[:5]
    ['dvc', 'exp', 'show', '--drop', '.*']
    """
    if "--all" in extra:
        return ["dvc", "exp", "show", *[a for a in extra if a != "--all"]]
    # the table merges the revision into "Experiment"; CSV keeps it apart, in "rev"
    keep = "^(.*:)?(" + "|".join(KEEP + (("rev",) if "--csv" in extra else ())) + ")$"
    return ["dvc", "exp", "show", "--drop", ".*", "--keep", keep, *extra]


def main(argv: list[str]) -> int:
    return subprocess.run(exp_show_command(argv)).returncode
