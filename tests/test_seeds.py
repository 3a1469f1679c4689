"""Two seeds, two jobs: ``seed`` keeps the data and the split, ``train.seed`` varies training alone."""

import hashlib
from pathlib import Path

import pytest
import yaml
from tests.conftest import repo_params, shrink, stage_main

from audioclf.config import ParamsError, parse_params
from audioclf.training.loop import train


def test_train_seed_follows_seed_until_set():
    raw = repo_params()
    assert raw["train"]["seed"] is None
    assert parse_params(raw).train_spec().seed == raw["seed"]
    raw["train"]["seed"] = 7
    params = parse_params(raw)
    assert params.train_spec().seed == 7 and params.seed == raw["seed"]
    assert params.train_spec().resolved()["seed"] == 7  # what checkpoints record
    raw["train"]["seed"] = -1
    with pytest.raises(ParamsError, match="'train.seed' must be null or an integer >= 0, got -1"):
        parse_params(raw)


def _stage_outputs(raw: dict, folder: Path) -> dict[str, str]:
    """Run the download and split stages in-process on ``raw`` params; sha256 of every file they
    write."""
    folder.mkdir()
    params = str(folder / "params.yaml")
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))
    stage_main("download")(
        [
            "--out",
            str(folder / "raw"),
            "--profile",
            str(folder / "profile.json"),
            "--params",
            params,
        ]
    )
    stage_main("split")(
        [
            *("--manifest", str(folder / "raw" / "manifest.csv"), "--out", str(folder / "split")),
            *("--test-out", str(folder / "test"), "--report", str(folder / "split.json")),
            *("--params", params),
        ]
    )
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "params.yaml"
    }


def test_train_seed_leaves_data_and_split_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the stages' repository root
    monkeypatch.delenv("DVC_ROOT", raising=False)
    raw = shrink(repo_params())
    # a few short clips of three classes: enough for a grouped split of every class
    raw["data"]["synthetic"].update(
        n_classes=3, max_clips_per_class=9, imbalance=1.0, clip_seconds=0.25
    )
    first = _stage_outputs(raw, tmp_path / "a")
    raw["train"]["seed"] = 1234
    assert _stage_outputs(raw, tmp_path / "b") == first
    assert any(name.startswith("raw/audio/") for name in first) and "test/fold_0.csv" in first
    raw["seed"] += 1  # the data seed does change them (so the check above can fail)
    other = _stage_outputs(raw, tmp_path / "c")
    assert other["raw/manifest.csv"] != first["raw/manifest.csv"]
    assert other["test/fold_0.csv"] != first["test/fold_0.csv"]


def test_train_seed_changes_training(tiny_cache, tmp_path):
    from audioclf.features.table import FeatureTable

    cache, splits = tiny_cache
    # a few batches of one epoch: the first loss already tells the seeds apart
    paths = {name: [e.path for e in rows[:24]] for name, rows in splits.items()}
    table = FeatureTable(cache)
    raw = shrink(repo_params())
    raw["train"].update(epochs=1)

    def history(train_seed):
        raw["train"]["seed"] = train_seed
        spec = parse_params(raw).train_spec()
        out = tmp_path / f"{train_seed}.pt"
        return train(spec, table, paths["train"], paths["val"], out, lambda m, s: None)["history"]

    followed = history(None)
    assert history(raw["seed"]) == followed  # null follows seed: the same training
    changed = history(raw["seed"] + 1)
    assert changed != followed
    assert changed[0]["train_loss"] != followed[0]["train_loss"]
