"""The MLflow run behind a DVC run, and its per-epoch history.

Training tags its run with ``dvc_exp_name`` (the DVC experiment's name; ``workspace``
for ``dvc repro``) and evaluate logs ``test_<metric>`` into it. One name can have
several runs (every ``dvc repro`` of the workspace, an experiment rerun with
``--force``), so :func:`find_run` takes the latest whose test metrics equal those in
the run's own ``reports/metrics.json``: a report never mixes one training's files with
another's curves. For cross-validation the run is the parent and each fold's epochs
are in its child run (tag ``fold``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from audioclf.tracking import experiment_name, use_store

# per-epoch metrics training logs, in the order of the progression table
HISTORY = (
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "train_macro_f1",
    "val_macro_f1",
    "lr",
)


@dataclass(frozen=True)
class TrackedRun:
    """An MLflow run: its id, experiment, tags, and the run holding each fold's epochs."""

    run_id: str
    experiment: str
    tags: dict[str, str]
    folds: dict[int, str]


def _same(logged: dict[str, float], test: dict[str, float]) -> bool:
    """Whether the run's ``test_<metric>`` values are the metrics file's, every one of them."""
    keys = [k for k, v in test.items() if isinstance(v, (int, float))]
    return bool(keys) and all(
        f"test_{k}" in logged and math.isclose(logged[f"test_{k}"], test[k], abs_tol=1e-12)
        for k in keys
    )


def find_run(dataset: str, name: str, metrics: dict) -> TrackedRun | None:
    """The latest finished MLflow run tagged ``dvc_exp_name = name`` whose test metrics are
    ``metrics["test"]``; None when the store holds none (it was reset, or moved)."""
    if not re.fullmatch(r"[\w.@/+-]+", name):  # DVC's names; anything else cannot be quoted here
        return None
    use_store()
    client = MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name(dataset))
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.dvc_exp_name = '{name}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    test = metrics.get("test") or {}
    for run in runs:
        tags = run.data.tags
        if "mlflow.parentRunId" in tags or not _same(run.data.metrics, test):
            continue
        children = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'",
        )
        folds = {int(c.data.tags["fold"]): c.info.run_id for c in children if "fold" in c.data.tags}
        return TrackedRun(
            run.info.run_id, experiment.name, dict(tags), folds or {0: run.info.run_id}
        )
    return None


def history(run_id: str) -> list[dict[str, float]]:
    """One row per epoch (``epoch`` and the :data:`HISTORY` metrics the run logged), in order."""
    use_store()
    client = MlflowClient()
    rows: dict[int, dict[str, float]] = {}
    for key in HISTORY:
        for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            rows.setdefault(m.step, {"epoch": m.step})[key] = m.value  # a re-logged step: the last
    return [rows[step] for step in sorted(rows) if step >= 1]
