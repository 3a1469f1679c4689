"""MLflow tracking: where the store is, and one run per training.

The default store is ``sqlite:///<root>/mlflow.db`` with artifacts under
``<root>/mlartifacts``, where ``<root>`` is ``DVC_ROOT`` when DVC runs the stage
(queued and ``--temp`` experiments execute in a throw-away copy of the repo; a store
relative to the working directory would vanish with it) and the working directory
otherwise. ``MLFLOW_TRACKING_URI`` set by the user overrides the store (MLflow 3
sets that variable itself whenever a tracking URI is set, so a value this module set
is not taken for the user's: see :func:`user_uri`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from audioclf.io import project_path

log = logging.getLogger(__name__)
RUN_ID_TAG = "audioclf.run_id"
_SET_HERE: list[
    str
] = []  # tracking URIs this process set (MLflow exports them as MLFLOW_TRACKING_URI)


def project_root() -> Path:
    """The real repository root: ``DVC_ROOT`` inside DVC experiments, else the working dir."""
    return project_path(".").resolve()


def user_uri() -> str | None:
    """``MLFLOW_TRACKING_URI`` if the user set it; None if unset or set by this process."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return None if not uri or uri in _SET_HERE else uri


def tracking_uri() -> str:
    """The user's ``MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlflow.db``."""
    return user_uri() or f"sqlite:///{project_root() / 'mlflow.db'}"


def use_store() -> str:
    """Point MLflow at :func:`tracking_uri` for this process; returns it."""
    user = user_uri()
    uri = user or tracking_uri()
    if user is None:  # the user's URI stays the user's, however often it is set here
        _SET_HERE.append(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def experiment_name(dataset: str) -> str:
    return f"audioclf-{dataset}"


def _experiment_id(name: str) -> str:
    """The experiment ``name``, created with its artifacts in the repository's store.

    With the default store, an experiment whose artifact root lies elsewhere (created by a
    process that ran in a temporary copy of the repository, which DVC deletes, or by an
    older version) would send every later run's artifacts there too: it is renamed
    ``<name>-artifacts-elsewhere-<id>``, its runs kept, and a new one is created.
    """
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    artifacts = (
        None if user_uri() else (project_root() / "mlartifacts").as_uri()
    )  # else: the server's
    if exp is not None and (artifacts is None or _same_place(exp.artifact_location, artifacts)):
        return exp.experiment_id
    if exp is not None:
        moved = f"{name}-artifacts-elsewhere-{exp.experiment_id}"
        log.warning(
            "MLflow experiment %r keeps its artifacts at %s, outside this repository's store; "
            "renamed it %r (its runs are kept) and started a new one",
            name,
            exp.artifact_location,
            moved,
        )
        client.rename_experiment(exp.experiment_id, moved)
    return client.create_experiment(name, artifact_location=artifacts)


def _same_place(location: str, expected: str) -> bool:
    def path(uri: str) -> str:
        return os.path.normpath(uri.removeprefix("file://"))

    return path(location) == path(expected)


def git_commit(cwd: Path | None = None) -> str:
    """Commit of the checkout the stage runs in (``unknown`` outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@contextlib.contextmanager
def start_run(
    dataset: str,
    *,
    run_name: str,
    params: dict[str, Any] | None = None,
    run_id: str | None = None,
    nested: bool = False,
    tags: dict[str, str] | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Open (or, with ``run_id``, reopen) an MLflow run in the dataset's experiment.

    New runs are tagged with the git commit, the DVC experiment name and ``tags``, and
    get ``params`` (already flattened) logged. ``nested`` makes the run a child of the
    active one (cross-validation: one child per fold). The run ends FAILED if the
    block raises.
    """
    use_store()
    if run_id is not None and not _run_exists(run_id):
        run_id = None  # the store was reset since training; record evaluation in a new run
    if run_id is None:
        run = mlflow.start_run(
            experiment_id=_experiment_id(experiment_name(dataset)), run_name=run_name, nested=nested
        )
        mlflow.set_tags(
            {
                "git_commit": git_commit(),
                "dvc_exp_name": os.environ.get("DVC_EXP_NAME", "workspace"),
                "dataset": dataset,
                **(tags or {}),
            }
        )
        if params:
            mlflow.log_params({k: _param_value(v) for k, v in params.items()})
    else:
        run = mlflow.start_run(run_id=run_id, nested=nested)
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        mlflow.end_run(status=status)


@dataclass(frozen=True)
class Runs:
    """The MLflow runs of one stage: one run per training, with one child per fold in a
    cross-validation. A stage creates it and hands it to the library, which opens the runs.

    Attributes:
        dataset: names the experiment (``audioclf-<dataset>``).
        name: the run's name (``<model>-<loss>``); a fold's child is ``<name>-fold<n>``.
        params: flattened params logged on every new run.
        tags: tags of every new run (a child also gets ``fold``).
    """

    dataset: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def open(
        self, *, run_id: str | None = None
    ) -> contextlib.AbstractContextManager[mlflow.ActiveRun]:
        """The training's run (reopened with ``run_id``)."""
        return start_run(
            self.dataset, run_name=self.name, params=self.params, tags=self.tags, run_id=run_id
        )

    def open_fold(
        self, n: int, *, run_id: str | None = None
    ) -> contextlib.AbstractContextManager[mlflow.ActiveRun]:
        """Fold ``n``'s child of the active run (reopened with ``run_id``)."""
        return start_run(
            self.dataset,
            run_name=f"{self.name}-fold{n}",
            params=self.params,
            nested=True,
            run_id=run_id,
            tags={**self.tags, "fold": str(n)},
        )

    @staticmethod
    def reuse(run: mlflow.ActiveRun) -> contextlib.AbstractContextManager[mlflow.ActiveRun]:
        """The already open ``run`` (a single fold trains in the training's run itself)."""
        return contextlib.nullcontext(run)


def _run_exists(run_id: str) -> bool:
    try:
        MlflowClient().get_run(run_id)
        return True
    except mlflow.exceptions.MlflowException:
        return False


def _param_value(value: Any) -> str:
    text = str(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def parent_run_id(run_id: str | None) -> str | None:
    """The parent of a nested (per-fold) run, or None if it has none or is not in the store."""
    if run_id is None:
        return None
    use_store()
    try:
        return MlflowClient().get_run(run_id).data.tags.get("mlflow.parentRunId")
    except mlflow.exceptions.MlflowException:
        return None
