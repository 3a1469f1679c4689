"""Shared fixtures: a shrunk params set, a small synthetic dataset on disk, its feature table, and a
git+DVC copy of the repository to run the pipeline in."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from audioclf.config import Params, parse_params
from audioclf.data.datasets.synthetic import generate
from audioclf.data.manifest import Entry

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none present")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def shrink(raw: dict) -> dict:
    """A copy of params small enough for a CPU test: 6 classes, 1-s clips, 32 mels."""
    raw = copy.deepcopy(raw)
    raw["data"]["synthetic"].update(
        n_classes=6,
        max_clips_per_class=30,
        imbalance=2.0,
        clips_per_recording=[2, 3],
        clip_seconds=1.0,
        sample_rate=16000,
        snr_db=[10.0, 25.0],
    )
    raw["features"].update(
        sample_rate=16000, n_fft=512, hop_length=256, n_mels=32, segment_seconds=1.0
    )
    # 32 mels are few: keep full resolution in the stem
    raw["model_params"]["cnn"].update(channels=[8, 16, 32], hidden=16, stem_stride=1)
    raw["model_params"]["cnn_v2"].update(channels=[8, 16, 16, 32, 32], hidden=16, stem_stride=1)
    raw["train"].update(epochs=3, batch_size=8, lr=0.003, patience=3)
    return raw


@pytest.fixture
def raw_params() -> dict:
    return repo_params()


@pytest.fixture
def tiny_params() -> Params:
    return parse_params(shrink(repo_params()))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> tuple[Path, list[Entry]]:
    """The shrunk synthetic dataset written once per session: (folder, manifest entries)."""
    params = parse_params(shrink(repo_params()))
    out = tmp_path_factory.mktemp("synthetic")
    return out, generate(params.data.synthetic, params.seed, out)


@pytest.fixture(scope="session")
def tiny_cache(tiny_dataset, tmp_path_factory):
    """The shrunk dataset's feature cache and a 60/20/20 grouped split: (cache folder, {split: entries})."""
    from audioclf.data.split import grouped_split
    from audioclf.features.extract import extract_features

    params = parse_params(shrink(repo_params()))
    root, entries = tiny_dataset
    cache = tmp_path_factory.mktemp("cache") / "features"
    extract_features(entries, root, params.features, cache, store_dir=cache.parent / "store")
    return cache, grouped_split(entries, {"train": 0.6, "val": 0.2, "test": 0.2}, params.seed)


def run(cmd: list[str], cwd: Path, env: dict) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git+DVC copy of the working tree with shrunk params and its environment."""
    root = tmp_path_factory.mktemp("project")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        if (REPO / rel).is_file() and not rel.startswith("reports/"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    raw = shrink(yaml.safe_load((REPO / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (root / "dvc.lock").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(root / "src"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        run(cmd, root, env)
    return root, env
