"""A git repository holding two committed runs (tags ``a`` and ``b``: hand-made predictions, ``b``
planted clearly better) and a third, uncommitted, in the workspace; DVC reads git revisions
without ``dvc init``."""

import json
import subprocess

import numpy as np
import pytest
import yaml
from tests.conftest import repo_params

from audioclf.evaluation.predictions import write_probabilities

LABELS = ["s0", "s1", "s2", "s3"]


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def probs_at(n: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) classes and (N, C) probabilities whose top class is right with ``accuracy``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(LABELS)
    probs = rng.dirichlet(np.ones(len(LABELS)), n).astype(np.float32)
    top = np.where(rng.random(n) < accuracy, y, (y + 1) % len(LABELS))
    probs[np.arange(n), top] += 1.0
    return y, (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def write_run(root, y, probs, paths):
    rows = [{"fold": 0, "path": p, "actual": LABELS[t]} for p, t in zip(paths, y, strict=True)]
    write_probabilities(root / "reports/probabilities.csv", rows, probs, LABELS)
    counts = {lab: {"train": 10 * (i + 1), "val": 2, "test": 3} for i, lab in enumerate(LABELS)}
    (root / "reports/split.json").write_text(json.dumps({"folds": [{"per_class": counts}]}))


@pytest.fixture(scope="package")
def repo(tmp_path_factory):
    """(root, {run: probabilities}, true classes, file paths)."""
    root = tmp_path_factory.mktemp("runs")
    git(root, "init", "-q")
    raw = repo_params()
    raw["evaluate"]["bootstrap"] = 100
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    (root / "reports").mkdir()
    paths = [f"audio/f{i}.wav" for i in range(160)]
    y, pa = probs_at(160, 0.55, seed=1)
    pb = pa.copy()
    wrong = np.flatnonzero(pa.argmax(axis=1) != y)[:40]
    pb[wrong, y[wrong]] += 2.0  # b: forty of a's mistakes put right
    pb /= pb.sum(axis=1, keepdims=True)
    for tag, probs in (("a", pa), ("b", pb)):
        write_run(root, y, probs, paths)
        git(root, "add", "-A")
        git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", tag)
        git(root, "tag", tag)
    _, pw = probs_at(160, 0.9, seed=2)
    write_run(root, y, pw, paths)  # the workspace: uncommitted
    return root, {"a": pa, "b": pb, "workspace": pw}, y, paths
