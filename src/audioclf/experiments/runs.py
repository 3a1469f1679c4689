"""One run's files, read from where DVC keeps them: a DVC experiment, a git revision or the workspace.

An experiment of ``dvc exp show`` is a commit that holds its ``params.yaml`` and the
small outputs of the pipeline (``reports/*``, which ``dvc.yaml`` keeps out of the
cache); :func:`dvc.api.read` reads any of them by experiment name, branch, tag or
commit, and the working tree for ``workspace``. :class:`RunFiles` names what the
comparisons and reports read, and turns every way of not finding a file into one
line naming the run, the file and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Outputs:
    """Where the pipeline writes what is read back (the paths of ``dvc.yaml``)."""

    params: str = "params.yaml"
    metrics: str = "reports/metrics.json"
    train: str = "reports/train.json"
    per_class: str = "reports/per_class.json"
    split: str = "reports/split.json"
    probabilities: str = "reports/probabilities.csv"
    curves: str = "reports/curves"
    confusion: str = "reports/confusion_matrix.png"
    per_class_plot: str = "reports/per_class_f1.png"
    reliability: str = "reports/reliability.png"


class RunFiles:
    """The files of run ``name`` (an experiment, a git revision, or ``workspace``) in repository ``root``."""

    def __init__(self, name: str, root: str | Path = ".", outputs: Outputs = Outputs()):
        self.name = name
        self.root = Path(root)
        self.outputs = outputs
        self._cache: dict[tuple[str, str], Any] = {}

    @property
    def is_workspace(self) -> bool:
        return self.name == WORKSPACE

    def read(self, path: str, mode: str = "r") -> str | bytes:
        """The file ``path`` of this run (``mode`` ``"rb"`` for bytes).

        Raises:
            MissingInputError: no such run, or the run has no such file.
        """
        key = (path, mode)
        if key not in self._cache:
            self._cache[key] = self._read(path, mode)
        return self._cache[key]

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
        raw = yaml.safe_load(self.read(self.outputs.params))
        if not isinstance(raw, dict):
            raise MissingInputError(f"{self.name}: {self.outputs.params} is not a mapping")
        return raw

    def metrics(self) -> dict:
        return self.json(self.outputs.metrics)

    def predictions(self) -> FilePredictions:
        """Per-file test probabilities (``reports/probabilities.csv``)."""
        path = self.outputs.probabilities
        return parse_probabilities(self.read(path), f"{self.name}:{path}")

    def train_counts(self) -> dict[str, float]:
        """Training clips per class (the mean over folds), from the split report."""
        try:
            return training_counts(self.json(self.outputs.split))
        except ValueError as exc:
            raise MissingInputError(f"{self.name}: {exc}") from None

    def bucket_of(self, labels: tuple[str, ...] | list[str]) -> np.ndarray | None:
        """(C,) head/mid/tail bucket of each class by its training count; None if a class has no count."""
        counts = self.train_counts()
        if any(lab not in counts for lab in labels):
            return None
        raw = (self.params().get("evaluate") or {}).get("buckets")
        buckets = build(BucketsConfig, raw, "evaluate.buckets")
        counts = np.array([counts[lab] for lab in labels], dtype=float)
        return assign_buckets(counts, head=buckets.head, tail=buckets.tail)
