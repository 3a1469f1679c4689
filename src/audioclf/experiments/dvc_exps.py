"""Thin wrappers over the DVC experiment commands the ladder and ``repeat`` use.

Experiments run through the DVC queue (``dvc exp run --queue``, then ``dvc exp run
--run-all``, which starts a worker and waits). Each runs in a temporary copy of the
repository; MLflow runs still land in the repository's store because
:mod:`audioclf.tracking` resolves it against ``DVC_ROOT``. Results are read back from
``dvc exp show --json``, where a failed experiment carries an ``error`` (and its
baseline's metrics, which must not be taken for its own).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from audioclf.errors import UserError


class DvcError(UserError, RuntimeError):
    """A dvc command failed; the message holds the command and its stderr."""


def dvc(args: list[str], cwd: Path) -> str:
    """Run ``dvc <args>`` in ``cwd`` and return its stdout."""
    out = subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise DvcError(
            f"dvc {' '.join(args)} failed ({out.returncode}):\n{(out.stderr or out.stdout).strip()[-3000:]}"
        )
    return out.stdout


def queue_command(name: str, overrides: list[str]) -> list[str]:
    """The ``dvc exp run --queue`` arguments for one named experiment.

    >>> queue_command("baseline", ["model=cnn", "seed=1"])
    ['exp', 'run', '--queue', '-n', 'baseline', '-S', 'model=cnn', '-S', 'seed=1']
    """
    return ["exp", "run", "--queue", "-n", name, *[arg for o in overrides for arg in ("-S", o)]]


def conflicts(names: list[str], cwd: Path) -> tuple[list[str], list[str]]:
    """Which of ``names`` are taken on the current commit: DVC would not keep two experiments of one
    name (the second is lost), and a failed task of that name would shadow the new result.

    Returns:
        (experiment names to remove, queue task ids to remove), for ``--force``.
    """
    taken = set(dvc(["exp", "list", "--name-only"], cwd).split()) & set(names)
    tasks = [
        t
        for t in queue_tasks(cwd)
        if t["name"] in names and t["status"] in ("Queued", "Running", "Failed")
    ]
    return sorted(taken), [t["task"] for t in tasks]


def queue_tasks(cwd: Path) -> list[dict[str, str]]:
    """``dvc queue status`` as ``[{"task", "name", "status"}]`` (Queued, Running, Success, Failed)."""
    tasks = []
    for line in dvc(["queue", "status"], cwd).splitlines():
        fields = line.split()
        if len(fields) >= 4 and re.fullmatch(r"[0-9a-f]{7,}", fields[0]):
            tasks.append({"task": fields[0], "name": fields[1], "status": fields[-1]})
    return tasks


def remove(names: list[str], tasks: list[str], cwd: Path) -> None:
    """Remove experiments by name and queue tasks by id."""
    if names:
        dvc(["exp", "remove", *names], cwd)
    if tasks:
        dvc(["queue", "remove", *tasks], cwd)


def run_queue(cwd: Path, jobs: int = 1) -> None:
    """Run every queued experiment and wait (``dvc exp run --run-all``); failures are read back later."""
    dvc(["exp", "run", "--run-all", "-j", str(jobs)], cwd)


def failure_reason(name: str, cwd: Path) -> str:
    """The most telling line of a failed experiment's log: the last exception, else the last ERROR."""
    try:
        log = dvc(["queue", "logs", name], cwd).splitlines()
    except DvcError as err:
        return f"failed (no log: {err})"
    errors = [
        line.strip() for line in log if re.match(r"^\w[\w.]*(Error|Exception): ", line.strip())
    ]
    errors = errors or [line.strip() for line in log if line.strip().startswith("ERROR")]
    return errors[-1] if errors else "failed (see: dvc queue logs " + name + ")"


def _experiments(shown: list[dict]) -> list[dict]:
    """Every experiment revision in ``dvc exp show --json`` output (baselines excluded)."""
    return [
        rev
        for commit in shown
        for group in commit.get("experiments") or []
        for rev in group.get("revs", [])
    ]


def collect(
    shown: list[dict], names: list[str], metrics_file: str = "reports/metrics.json"
) -> dict[str, dict[str, Any]]:
    """Results of the named experiments from ``dvc exp show --json``.

    Returns:
        name -> ``{"metrics": dict}`` (the contents of ``metrics_file``), ``params``
        (params.yaml) and ``rev`` (the experiment's commit), or ``{"error": message}`` for a failed experiment, or nothing for
        a name that is absent. With several of one name, the latest counts.
    """
    found: dict[str, dict[str, Any]] = {}
    for rev in sorted(
        _experiments(shown), key=lambda r: (r.get("data") or {}).get("timestamp") or ""
    ):
        name = rev.get("name")
        if name not in names:
            continue
        data = rev.get("data") or {}
        if rev.get("error"):
            found[name] = {"error": rev["error"].get("msg") or "experiment failed"}
            continue
        metrics = ((data.get("metrics") or {}).get(metrics_file) or {}).get("data")
        if metrics is None:
            found[name] = {"error": f"no {metrics_file} in the experiment"}
            continue
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        found[name] = {"metrics": metrics, "params": params, "rev": rev.get("rev")}
    return found


def show(cwd: Path, rev: str | None = None) -> list[dict]:
    """``dvc exp show --json`` of the experiments of commit ``rev`` (None: the current one)."""
    return json.loads(dvc(["exp", "show", "--json", *(["--rev", rev] if rev else [])], cwd) or "[]")


def head(cwd: Path) -> str:
    """The commit checked out in ``cwd``: the baseline of experiments queued from it."""
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()
