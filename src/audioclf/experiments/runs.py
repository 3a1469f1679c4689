"""One run as DVC and MLflow hold it: its files (an experiment, a git revision or the workspace)
and the MLflow run that trained it.

An experiment of ``dvc exp show`` is a commit holding its ``params.yaml`` and the small
outputs of the pipeline (``reports/*``); :func:`dvc.api.read` reads them by experiment name,
branch, tag or commit, and the working tree for ``workspace``. Training tags its MLflow run
``dvc_exp_name`` (``workspace`` for ``dvc repro``) and evaluate logs ``test_<metric>`` into it;
one name can have several runs (every ``dvc repro``, a rerun with ``--force``), so
:func:`find_run` takes the latest whose test metrics are the run's own ``reports/metrics.json``:
a report never mixes one training's files with another's curves.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from audioclf.config.evaluation import BucketsConfig
from audioclf.config.schema import build
from audioclf.errors import MissingInputError
from audioclf.evaluation.buckets import assign_buckets, training_counts
from audioclf.evaluation.predictions import FilePredictions, parse_probabilities

WORKSPACE = "workspace"
# the outputs of dvc.yaml that are read back
PARAMS = "params.yaml"
METRICS = "reports/metrics.json"
TRAIN = "reports/train.json"
PER_CLASS = "reports/per_class.json"
SPLIT = "reports/split.json"
PROBABILITIES = "reports/probabilities.csv"
CURVES = "reports/curves"
FIGURES = {  # the evaluation figures a report shows: name -> file
    "per_class_f1": "reports/per_class_f1.png",
    "confusion_matrix": "reports/confusion_matrix.png",
    "reliability": "reports/reliability.png",
}
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


class RunFiles:
    """The files of run ``name`` (an experiment, a git revision, or ``workspace``) in ``root``."""

    def __init__(self, name: str, root: str | Path):
        self.name = name
        self.root = Path(root)
        self._cache: dict[tuple[str, str], Any] = {}

    @property
    def is_workspace(self) -> bool:
        return self.name == WORKSPACE

    def read(self, path: str, mode: str = "r") -> str | bytes:
        """The file ``path`` of this run (``mode`` ``"rb"`` for bytes).

        Raises:
            MissingInputError: no such run, or the run has no such file.
        """
        if (path, mode) not in self._cache:
            self._cache[path, mode] = self._read(path, mode)
        return self._cache[path, mode]

    def _read(self, path: str, mode: str) -> str | bytes:
        import dvc.api
        from dvc.exceptions import DvcException, PathMissingError
        from dvc.scm import RevError

        rev = None if self.is_workspace else self.name
        try:
            return dvc.api.read(path, repo=str(self.root), rev=rev, mode=mode)
        except RevError:
            raise MissingInputError(
                f"no experiment, branch or commit named {self.name!r} in {self.root} "
                "(dvc exp list shows the experiments; 'workspace' is the working tree)"
            ) from None
        except (PathMissingError, FileNotFoundError):
            raise MissingInputError(
                f"{self.name}: no {path} (run the pipeline there first; an experiment from before "
                f"evaluate wrote {path} needs a rerun: dvc exp apply {self.name} && dvc repro)"
            ) from None
        except DvcException as exc:
            raise MissingInputError(f"{self.name}: cannot read {path}: {exc}") from None

    def json(self, path: str) -> Any:
        try:
            return json.loads(self.read(path))
        except json.JSONDecodeError as exc:
            raise MissingInputError(f"{self.name}: {path} is not valid JSON ({exc})") from None

    def params(self) -> dict:
        raw = yaml.safe_load(self.read(PARAMS))
        if not isinstance(raw, dict):
            raise MissingInputError(f"{self.name}: {PARAMS} is not a mapping")
        return raw

    def predictions(self) -> FilePredictions:
        """Per-file test probabilities (``reports/probabilities.csv``)."""
        return parse_probabilities(self.read(PROBABILITIES), f"{self.name}:{PROBABILITIES}")

    def train_counts(self) -> dict[str, float]:
        """Training clips per class (the mean over folds), from the split report."""
        try:
            return training_counts(self.json(SPLIT))
        except ValueError as exc:
            raise MissingInputError(f"{self.name}: {exc}") from None

    def bucket_of(self, labels: tuple[str, ...] | list[str]) -> np.ndarray | None:
        """(C,) head/mid/tail bucket of each class by its training count; None if one has none."""
        counts = self.train_counts()
        if any(lab not in counts for lab in labels):
            return None
        raw = (self.params().get("evaluate") or {}).get("buckets")
        buckets = build(BucketsConfig, raw, "evaluate.buckets")
        counts = np.array([counts[lab] for lab in labels], dtype=float)
        return assign_buckets(counts, head=buckets.head, tail=buckets.tail)

    def curves(self, fold: int) -> list[dict]:
        """One fold's per-epoch rows from ``reports/curves`` (the DVC plot)."""
        path = f"{CURVES}/fold_{fold}.csv"
        rows = list(csv.DictReader(io.StringIO(self.read(path))))
        try:
            return [{k: int(v) if k == "epoch" else float(v) for k, v in r.items()} for r in rows]
        except (TypeError, ValueError):
            raise MissingInputError(f"{self.name}: {path} is not numeric") from None


@dataclass(frozen=True)
class TrackedRun:
    """An MLflow run: its id, experiment, tags, and the run holding each fold's epochs."""

    run_id: str
    experiment: str
    tags: dict[str, str]
    folds: dict[int, str]


def find_run(client, experiment: str, name: str, test: dict) -> TrackedRun | None:
    """The latest finished run of MLflow ``experiment`` tagged ``dvc_exp_name = name`` whose
    ``test_<metric>`` values are every number of ``test``; None when the store holds none.

    Args:
        client: an ``MlflowClient`` of the repository's store.
        experiment: the MLflow experiment's name.
        name: the DVC experiment's name (``workspace`` for ``dvc repro``).
        test: the run's test metrics (``reports/metrics.json``'s ``test``).
    """
    if not re.fullmatch(r"[\w.@/+-]+", name):  # DVC's names; anything else cannot be quoted here
        return None
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    ids = [found.experiment_id]
    keys = [k for k, v in test.items() if isinstance(v, (int, float))]
    for run in client.search_runs(
        ids,
        filter_string=f"tags.dvc_exp_name = '{name}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    ):
        logged = run.data.metrics
        if "mlflow.parentRunId" in run.data.tags or not keys:
            continue
        if all(
            math.isclose(logged.get(f"test_{k}", math.nan), test[k], abs_tol=1e-12) for k in keys
        ):
            children = client.search_runs(
                ids, filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
            )
            folds = {
                int(c.data.tags["fold"]): c.info.run_id for c in children if "fold" in c.data.tags
            }
            return TrackedRun(
                run.info.run_id, experiment, dict(run.data.tags), folds or {0: run.info.run_id}
            )
    return None


def history(client, run_id: str) -> list[dict[str, float]]:
    """One row per epoch (``epoch`` and the :data:`HISTORY` metrics the run logged), in order."""
    from audioclf.tracking import curve_key  # imports MLflow, which a client has loaded

    rows: dict[int, dict[str, float]] = {}
    for key in HISTORY:  # a run logged before curve_key: under the plain name
        logged = client.get_metric_history(run_id, curve_key(key)) or client.get_metric_history(
            run_id, key
        )
        for m in sorted(logged, key=lambda m: m.timestamp):
            rows.setdefault(m.step, {"epoch": m.step})[key] = m.value  # a re-logged step: the last
    return [rows[step] for step in sorted(rows) if step >= 1]


@dataclass
class RunRecord:
    """One run as a report reads it.

    Attributes:
        name: the experiment (or revision, or ``workspace``).
        params: its params.yaml; metrics: reports/metrics.json.
        train: reports/train.json (one fold's result, or ``folds`` for cross-validation).
        per_class: reports/per_class.json.
        train_counts: class -> training clips (reports/split.json).
        tracked: its MLflow run, if the store holds it.
        histories: fold -> one dict per epoch (MLflow, else reports/curves).
        history_source: where the epochs were read, for the text.
    """

    name: str
    params: dict
    metrics: dict
    train: dict
    per_class: dict
    train_counts: dict[str, float]
    tracked: TrackedRun | None = None
    histories: dict[int, list[dict]] = field(default_factory=dict)
    history_source: str = ""

    def fold_results(self) -> dict[int, dict]:
        """fold -> its training result (best epoch, best validation macro-F1)."""
        folds = self.train.get("folds")
        return {int(n): r for n, r in folds.items()} if folds else {0: self.train}


def load_record(files: RunFiles, client) -> RunRecord:
    """Everything a report reads of one run: its DVC files, and its MLflow run and epochs
    through ``client`` (an ``MlflowClient`` of the repository's store), else the epochs of its
    ``reports/curves``."""
    from audioclf.tracking import experiment_name

    params, metrics = files.params(), files.json(METRICS)
    record = RunRecord(
        name=files.name,
        params=params,
        metrics=metrics,
        train=files.json(TRAIN),
        per_class=files.json(PER_CLASS),
        train_counts=files.train_counts(),
    )
    experiment = experiment_name(str(params.get("dataset")))
    record.tracked = find_run(client, experiment, files.name, metrics.get("test") or {})
    folds = list(record.fold_results())
    if record.tracked is not None and all(n in record.tracked.folds for n in folds):
        record.histories = {n: history(client, record.tracked.folds[n]) for n in folds}
        record.history_source = f"MLflow run `{record.tracked.run_id}`"
    if not all(record.histories.get(n) for n in folds):
        record.histories = {n: files.curves(n) for n in folds}
        record.history_source = f"`{CURVES}/` (no MLflow run of this name holds these test metrics)"
    return record
