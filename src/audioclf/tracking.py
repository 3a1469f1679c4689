"""MLflow tracking: where the store is, and one run per training.

An entry point resolves the store once (:func:`resolve_store`) and passes it down: the
user's ``MLFLOW_TRACKING_URI`` if set (the server then chooses where artifacts go), else
``sqlite:///<root>/mlflow.db`` with artifacts under ``<root>/mlartifacts``, where
``<root>`` is the repository root (:func:`audioclf.io.repo_root`: queued and ``--temp``
DVC experiments execute in a throw-away copy of the repository, and a store relative to
the working directory would vanish with it).

A sqlite store is created (its schema migrated by MLflow) and an experiment is created under a
file lock beside the database (``mlflow.db.lock``): two queued experiments that start on a
fresh repository would otherwise both migrate one new database at once, and one would fail.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import yaml
from filelock import FileLock, Timeout
from mlflow.tracking import MlflowClient

from audioclf.config.schema import flatten
from audioclf.errors import UserError

log = logging.getLogger(__name__)
RUN_ID_TAG = "audioclf.run_id"
LOCK_TIMEOUT_S = 600.0  # creating a store takes seconds; a holder this slow is stuck
# the experiment tag MLflow 3's UI reads to open an experiment in its model-training view rather
# than the GenAI one where it chooses the view per experiment; 3.17 follows the user's pick
# instead (the sidebar's "GenAI | Model training" switch, GenAI at first), which the address
# overrides with ``?workflowType=machine_learning`` (:func:`ui_hint` gives that link)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
TRAINING_VIEW = "workflowType=machine_learning"


@dataclass(frozen=True)
class Store:
    """Where runs go.

    Attributes:
        uri: the tracking URI.
        artifacts: the artifact root of experiments created here; None: the server's choice.
    """

    uri: str
    artifacts: str | None = None

    def client(self) -> MlflowClient:
        """A client of the store, which exists once this returns: a fresh sqlite database is
        created under :meth:`exclusive`, so processes that start together do not race."""
        with self.exclusive():  # MLflow creates the tables when the client opens the store
            return MlflowClient(tracking_uri=self.uri)

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held by one process at a time for a sqlite store; see :func:`exclusive`."""
        return exclusive(self.uri)


@contextlib.contextmanager
def exclusive(uri: str) -> Iterator[None]:
    """Held by one process at a time for a ``sqlite:///`` database (a lock file beside it): a
    library that creates its tables when it opens a database (MLflow, Optuna) fails in one of
    two processes that open a fresh one at once. A server database needs none."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{db}.lock", timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"waited {LOCK_TIMEOUT_S:g} s for {lock.lock_file}, held by another process "
            "creating the database; if none is running, delete the lock file"
        ) from None
    try:
        yield
    finally:
        lock.release()


def resolve_store(root: Path, environ: Mapping[str, str] = os.environ) -> Store:
    """The user's ``MLFLOW_TRACKING_URI``, else the repository's own store under ``root``."""
    user = environ.get("MLFLOW_TRACKING_URI")
    if user:
        return Store(user)
    root = Path(root).resolve()
    return Store(f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri())


class ArtifactsElsewhere(UserError):
    """The experiment exists with its artifact root outside the repository's store."""


def experiment_name(dataset: str) -> str:
    return f"audioclf-{dataset}"


def _experiment_id(store: Store, name: str) -> str:
    """The experiment ``name``, created with its artifacts in ``store``.

    Raises:
        ArtifactsElsewhere: it exists with its artifacts outside the repository's store (made
            by a process that ran in a temporary copy of the repository, which DVC deletes, or
            by an older version): every run's artifacts would go there too.
    """
    client = store.client()
    with store.exclusive():  # two first runs would both create it
        exp = client.get_experiment_by_name(name)
        if exp is None:
            return client.create_experiment(
                name, artifact_location=store.artifacts, tags=EXPERIMENT_KIND
            )
    if store.artifacts is None or _same_place(exp.artifact_location, store.artifacts):
        for key, value in EXPERIMENT_KIND.items():  # an experiment made by an older version
            if exp.tags.get(key) != value:
                client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    raise ArtifactsElsewhere(
        f"MLflow experiment {name!r} (id {exp.experiment_id}) keeps its artifacts at "
        f"{exp.artifact_location}, outside this repository's store ({store.artifacts}). Rename "
        f"it to keep its runs: mlflow experiments rename --experiment-id {exp.experiment_id} "
        f"--new-name {name}-old (with MLFLOW_TRACKING_URI={store.uri}); the next run creates "
        "a new one"
    )


def _same_place(location: str, expected: str) -> bool:
    def path(uri: str) -> str:
        return os.path.normpath(uri.removeprefix("file://"))

    return path(location) == path(expected)


def curve_key(name: str) -> str:
    """The MLflow key of a per-epoch metric: its split as a prefix, ``train_loss`` ->
    ``train/loss``, ``val_macro_f1`` -> ``val/macro_f1``, the optimizer's ``lr`` and
    ``grad_norm`` under ``train/``; other names as they are.

    MLflow's UI groups a run's charts in sections by the prefix before ``/`` and shows those
    sections above "Model metrics": the training curves come first, the single-point test
    figures (``test_macro_f1``, ...) after them.

    >>> [curve_key(k) for k in ("train_loss", "val_macro_f1", "lr", "class_weight_max")]
    ['train/loss', 'val/macro_f1', 'train/lr', 'class_weight_max']
    """
    split, _, rest = name.partition("_")
    if split in ("train", "val") and rest:
        return f"{split}/{rest}"
    return f"train/{name}" if name in ("lr", "grad_norm") else name


def log_curves(metrics: Mapping[str, float], step: int, suffix: str = "") -> None:
    """One epoch's metrics into the active run, under :func:`curve_key` (+ ``suffix``)."""
    mlflow.log_metrics({f"{curve_key(k)}{suffix}": v for k, v in metrics.items()}, step=step)


def ui_hint(store: Store, dataset: str) -> list[str]:
    """How to open the dataset's experiment in the MLflow UI, in its model-training view."""
    exp = store.client().get_experiment_by_name(experiment_name(dataset))
    page = f"#/experiments/{exp.experiment_id}?{TRAINING_VIEW}" if exp else ""
    if store.uri.startswith(("http://", "https://")):
        return [f"{store.uri.rstrip('/')}/{page}"]
    return [f"mlflow ui --backend-store-uri {store.uri}", f"then http://127.0.0.1:5000/{page}"]


def changed_params(params_file: Path, cwd: Path | None = None) -> dict[str, str]:
    """The params of ``params_file`` (dotted keys) that differ from the committed version of that
    file (``git show HEAD:<file>``): what a DVC experiment set with ``-S``, or what the workspace
    changed. Empty outside git or when the file is not committed."""
    try:
        rel = Path(params_file).resolve().relative_to(Path(cwd or Path.cwd()).resolve())
        committed = subprocess.run(
            ["git", "show", f"HEAD:{rel.as_posix()}"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        before = flatten(yaml.safe_load(committed) or {})
        after = flatten(yaml.safe_load(Path(params_file).read_text()) or {})
    except (OSError, ValueError, subprocess.CalledProcessError, yaml.YAMLError):
        return {}
    return {k: _param_value(v) for k, v in after.items() if k not in before or before[k] != v} | {
        k: "(removed)" for k in before if k not in after
    }


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
    store: Store,
    dataset: str,
    *,
    run_name: str,
    params: dict[str, Any] | None = None,
    run_id: str | None = None,
    nested: bool = False,
    tags: dict[str, str] | None = None,
    exp_name: str = "workspace",
    changed: dict[str, str] | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Open (or, with ``run_id``, reopen) an MLflow run in the dataset's experiment in ``store``.

    New runs are tagged with the git commit, the DVC experiment name ``exp_name``
    (``workspace`` for ``dvc repro``) and ``tags``, and get ``params`` (already flattened)
    logged; the params ``changed`` from the committed ones (:func:`changed_params`) become the
    run's description and its ``params_changed`` tag. ``nested`` makes the run a child of the
    active one (cross-validation: one child per fold). The run ends FAILED if the block raises.
    """
    mlflow.set_tracking_uri(store.uri)
    if run_id is not None and not _run_exists(store, run_id):
        run_id = None  # the store was reset since training; record evaluation in a new run
    if run_id is None:
        run = mlflow.start_run(
            experiment_id=_experiment_id(store, experiment_name(dataset)),
            run_name=run_name,
            nested=nested,
        )
        mlflow.set_tags(
            {
                "git_commit": git_commit(),
                "dvc_exp_name": exp_name,
                "dataset": dataset,
                **_changed_tags(changed or {}),
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


def _changed_tags(changed: dict[str, str]) -> dict[str, str]:
    """``params_changed`` (one line, for the runs table) and the run's description (the note the
    run page shows first)."""
    if not changed:
        return {"params_changed": "none (the committed params.yaml)"}
    pairs = [f"{k}={v}" for k, v in sorted(changed.items())]
    return {
        "params_changed": _param_value(" ".join(pairs)),
        "mlflow.note.content": "Params changed from the committed params.yaml:\n\n"
        + "\n".join(f"- `{p}`" for p in pairs),
    }


@dataclass(frozen=True)
class Runs:
    """The MLflow runs of one stage: one run per training, with one child per fold in a
    cross-validation. A stage creates it and hands it to the library, which opens the runs.

    Attributes:
        store: where the runs go (:func:`resolve_store`).
        dataset: names the experiment (``audioclf-<dataset>``).
        name: the run's name outside a DVC experiment (``<model>-<loss>``); in one, the run
            is named after the experiment (:attr:`run_name`); a fold's child is
            ``<run name>-fold<n>``.
        params: flattened params logged on every new run.
        tags: tags of every new run (a child also gets ``fold``).
        exp_name: the DVC experiment (``DVC_EXP_NAME``, read by the stage), tagged
            ``dvc_exp_name`` on every new run.
        changed: the params that differ from the committed ones (:func:`changed_params`).
    """

    store: Store
    dataset: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    exp_name: str = "workspace"
    changed: dict[str, str] = field(default_factory=dict)

    @property
    def run_name(self) -> str:
        """The DVC experiment's name (a phase of the ladder, say) or, for ``dvc repro`` in the
        workspace, ``<model>-<loss>``."""
        return self.name if self.exp_name == "workspace" else self.exp_name

    def open(
        self, *, run_id: str | None = None
    ) -> contextlib.AbstractContextManager[mlflow.ActiveRun]:
        """The training's run (reopened with ``run_id``)."""
        return start_run(
            self.store,
            self.dataset,
            run_name=self.run_name,
            params=self.params,
            tags=self.tags,
            run_id=run_id,
            exp_name=self.exp_name,
            changed=self.changed,
        )

    def open_fold(
        self, n: int, *, run_id: str | None = None
    ) -> contextlib.AbstractContextManager[mlflow.ActiveRun]:
        """Fold ``n``'s child of the active run (reopened with ``run_id``)."""
        return start_run(
            self.store,
            self.dataset,
            run_name=f"{self.run_name}-fold{n}",
            params=self.params,
            nested=True,
            run_id=run_id,
            tags={**self.tags, "fold": str(n)},
            exp_name=self.exp_name,
            changed=self.changed,
        )

    @staticmethod
    def reuse(run: mlflow.ActiveRun) -> contextlib.AbstractContextManager[mlflow.ActiveRun]:
        """The already open ``run`` (a single fold trains in the training's run itself)."""
        return contextlib.nullcontext(run)


def _run_exists(store: Store, run_id: str) -> bool:
    try:
        store.client().get_run(run_id)
        return True
    except mlflow.exceptions.MlflowException:
        return False


def _param_value(value: Any) -> str:
    text = str(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def parent_run_id(store: Store, run_id: str | None) -> str | None:
    """The parent of a nested (per-fold) run, or None if it has none or is not in ``store``."""
    if run_id is None:
        return None
    try:
        return store.client().get_run(run_id).data.tags.get("mlflow.parentRunId")
    except mlflow.exceptions.MlflowException:
        return None
