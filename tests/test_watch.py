"""A run you can watch: training logs a line per epoch, features and audit log progress, the last
stage ends with the run's summary -- all through the commands' logging, into a log that is no
terminal; the MLflow experiment opens in the model-training view, runs carry their DVC
experiment's name and changed params, test figures go in one table; ``audioclf show`` fits a
screen; a missing ``data.archive`` fails."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.conftest import REPO, repo_params, shrink

from audioclf import progress
from audioclf.cli import run as run_command
from audioclf.cli import setup_logging
from audioclf.config import parse_params
from audioclf.config.evaluation import EvaluateConfig
from audioclf.data.audit import audit_folds
from audioclf.errors import MissingInputError
from audioclf.evaluation.evaluate import TEST_TABLE, evaluate_folds, log_evaluation
from audioclf.experiments import show
from audioclf.features.extract import extract_features
from audioclf.features.table import FeatureTable
from audioclf.tracking import Runs, Store, changed_params
from audioclf.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")
EPOCH_LINE = re.compile(
    r"^train: fold 2: epoch (\d+)/4: train loss \d+\.\d{4}, val loss \d+\.\d{4}, "
    r"val macro-F1 \d\.\d{4}, lr \d\.\d\de[-+]\d\d, \d+\.\d s/epoch, ETA \d\d:\d\d, "
    r"(best \d\.\d{4} \(epoch \d\)|the best is kept from epoch 3 on)"
)


@contextlib.contextmanager
def command_log():
    """The logging a command sets up (:func:`audioclf.cli.setup_logging`), into a stream that is
    no terminal (as under ``nohup`` or ``dvc repro`` in CI); yields the stream. The test
    process's own handlers and levels are put back after."""
    root, ours = logging.getLogger(), logging.getLogger("audioclf")
    saved = root.handlers[:], root.level, ours.level
    stream = io.StringIO()
    try:
        with contextlib.redirect_stderr(stream):
            setup_logging(False)
        assert not stream.isatty()
        yield stream
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        ours.setLevel(saved[2])


def stage_module(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stage_argv(name: str) -> list[str]:
    """The stage's arguments as ``dvc.yaml`` gives them."""
    argv = shlex.split(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]["cmd"])
    return argv[argv.index(f"stages/{name}.py") + 1 :]


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    """Four epochs of the shrunk CNN as fold 2 (none kept as the best before the third), logged
    the way a command logs: (result, log text, checkpoint, table, test files)."""
    params = parse_params(shrink(repo_params()))
    params = dataclasses.replace(
        params, train=dataclasses.replace(params.train, epochs=4, patience=4, min_epochs=3)
    )
    cache, splits = tiny_cache
    paths = {name: [e.path for e in rows] for name, rows in splits.items()}
    checkpoint = tmp_path_factory.mktemp("watch") / "fold_0" / "best.pt"
    table = FeatureTable(cache)
    with command_log() as stream:
        result = train(
            params.train_spec(),
            table,
            paths["train"],
            paths["val"],
            checkpoint,
            log_metrics=lambda m, step: None,
            fold=2,
        )
    return result, stream.getvalue(), checkpoint, table, paths["test"]


def test_training_logs_one_line_per_epoch(trained):
    result, text, _, table, _ = trained
    lines = [line for line in text.splitlines() if EPOCH_LINE.match(line)]
    assert [int(EPOCH_LINE.match(line).group(1)) for line in lines] == [1, 2, 3, 4], text
    history = result["history"]
    for line, row in zip(lines, history, strict=True):
        assert f"val macro-F1 {row['val_macro_f1']:.4f}" in line
        assert f"train loss {row['train_loss']:.4f}" in line
    assert lines[-1].endswith(
        f"best {result['best_val_macro_f1']:.4f} (epoch {result['best_epoch']})"
    )
    # no epoch before min_epochs is kept, and the lines do not call one the best
    assert all(line.endswith("the best is kept from epoch 3 on") for line in lines[:2])
    assert result["best_epoch"] >= 3
    assert "ETA 00:00" in lines[-1]  # nothing left after the last epoch
    assert result["best_val_macro_f1"] > 1 / len(table.labels) + 0.2  # it learned


def test_progress_lines_come_at_most_every_interval():
    now = [0.0]
    with command_log() as stream:
        p = progress.Progress(
            logging.getLogger("audioclf.test"), "work", 100, every_s=10, clock=lambda: now[0]
        )
        for _ in range(100):
            now[0] += 1.0
            p.update()
    lines = stream.getvalue().splitlines()
    # one line per 10 s of a 100-s job, none for the last item (the caller's summary follows)
    assert len(lines) == 9
    assert lines[0] == "work: 10/100 files (10%), 1.0 files/s, ETA 01:30"


def test_features_and_audit_log_progress(tiny_dataset, tiny_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "EVERY_S", 0.0)  # a line per batch of files
    root, entries = tiny_dataset
    params = parse_params(shrink(repo_params()))
    with command_log() as stream:
        extract_features(entries, root, params.features, tmp_path / "f", store_dir=tmp_path / "s")
        folds = [{k: v for k, v in tiny_cache[1].items()}]
        audit_folds(folds, root)
    text = stream.getvalue()
    pattern = r"^{}: \d+/{} files \(\d+%\), [\d.]+ files/s, ETA \d\d:\d\d$"
    assert re.search(pattern.format("features", len(entries)), text, re.M), text
    n = sum(len(v) for v in folds[0].values())
    assert re.search(pattern.format("audit: fingerprinting", n), text, re.M), text


def store_at(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "mlartifacts").as_uri())


def test_runs_open_in_the_training_view_named_after_their_experiment(tmp_path):
    store = store_at(tmp_path)
    runs = Runs(store, "tiny", "cnn-ce", {"model": "cnn_v2"}, exp_name="phase-v2")
    runs = dataclasses.replace(runs, changed={"model": "cnn_v2", "train.epochs": "5"})
    with runs.open():
        with runs.open_fold(1):
            pass
    client = store.client()
    exp = client.get_experiment_by_name("audioclf-tiny")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    found = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(found) == {"phase-v2", "phase-v2-fold1"}
    tags = found["phase-v2"].data.tags
    assert tags["params_changed"] == "model=cnn_v2 train.epochs=5"
    assert "- `train.epochs=5`" in tags["mlflow.note.content"]
    # in the workspace (dvc repro) the run keeps its <model>-<loss> name
    with Runs(store, "tiny", "cnn-ce").open() as run:
        assert client.get_run(run.info.run_id).info.run_name == "cnn-ce"


def test_an_experiment_made_before_gets_the_tag(tmp_path):
    store = store_at(tmp_path)
    store.client().create_experiment("audioclf-tiny", artifact_location=store.artifacts)
    with Runs(store, "tiny", "cnn-ce").open():
        pass
    exp = store.client().get_experiment_by_name("audioclf-tiny")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_changed_params_are_those_that_differ_from_the_commit(tmp_path):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    (tmp_path / "params.yaml").write_text("model: cnn\ntrain:\n  epochs: 30\n  lr: 0.001\n")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "a"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True)
    assert changed_params(tmp_path / "params.yaml", tmp_path) == {}
    (tmp_path / "params.yaml").write_text("model: cnn_v2\ntrain:\n  epochs: 30\n  lr: 0.002\n")
    changed = changed_params(tmp_path / "params.yaml", tmp_path)
    assert changed == {"model": "cnn_v2", "train.lr": "0.002"}
    assert changed_params(tmp_path / "elsewhere.yaml", tmp_path) == {}


def test_evaluation_logs_one_test_table_and_a_model_the_run_links(trained, tmp_path):
    _, _, checkpoint, table, test = trained
    out = evaluate_folds(
        [checkpoint],
        table,
        [test],
        cfg=EvaluateConfig(bootstrap=20),
        seed=0,
        train_counts=dict.fromkeys(table.labels, 10.0),
    )
    store = store_at(tmp_path)
    with contextlib.chdir(tmp_path):  # a store without a registry would write here
        log_evaluation(Runs(store, "tiny", "cnn-ce"), out, [])
    client = store.client()
    (run,) = client.search_runs([client.get_experiment_by_name("audioclf-tiny").experiment_id])
    run_id = run.info.run_id
    metrics = client.get_run(run_id).data.metrics
    tests = sorted(k for k in metrics if k.startswith("test_"))
    # the headline figures alone as charts (they find the run and tag the registered version)
    assert tests == sorted(f"test_{k}" for k in out["summary"]["test"])
    rows = json.loads(
        Path(client.download_artifacts(run_id, TEST_TABLE, str(tmp_path))).read_text()
    )
    by_metric = {r[0]: dict(zip(rows["columns"], r, strict=True)) for r in rows["data"]}
    ci = out["summary"]["test_ci"]["macro_f1"]
    assert by_metric["macro_f1"]["ci_low"] == pytest.approx(ci["low"])
    assert by_metric["macro_f1"]["ci_high"] == pytest.approx(ci["high"])
    assert "mid_macro_f1" in by_metric  # every class has 10 training clips: all are mid
    model_uri = client.get_run(run_id).data.tags["mlflow_model"]
    (logged,) = client.search_logged_models([client.get_run(run_id).info.experiment_id])
    assert model_uri == f"models:/{logged.model_id}" and logged.source_run_id == run_id


def test_the_last_stage_ends_with_the_runs_summary(tmp_path, monkeypatch):
    (tmp_path / "reports").mkdir()
    metrics = json.loads((REPO / "reports" / "metrics.json").read_text())
    (tmp_path / "reports" / "metrics.json").write_text(json.dumps(metrics))
    for name in ("params.yaml", "dvc.yaml"):
        (tmp_path / name).write_text((REPO / name).read_text())
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    stage = stage_module("export")
    monkeypatch.setattr(stage, "export", lambda *args, **kwargs: {})  # no model to export here
    monkeypatch.chdir(tmp_path)
    with command_log() as stream, contextlib.redirect_stderr(stream):
        run_command(stage.main, stage_argv("export"))  # sets up its logging, to stderr
    text = stream.getvalue()
    f1, ci = metrics["test"]["macro_f1"], metrics["test_ci"]["macro_f1"]
    assert f"test macro-F1 {f1:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]" in text
    for shown in (
        "dvc plots show",
        "reports/confusion_matrix.png",
        "mlflow ui",
        "audioclf predict",
    ):
        assert shown in text, text


def test_show_fits_a_screen(tmp_path, monkeypatch, capfd):
    """Two commits that differ in two params: ``audioclf show`` holds the identity, the headline
    test figures and those two params, not every augmentation switch and interval."""
    for name in [k for k in os.environ if k.startswith(("DVC_", "MLFLOW_"))]:
        monkeypatch.delenv(name)
    for name in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{name}_NAME", "t")
        monkeypatch.setenv(f"{name}_EMAIL", "t@t")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    raw = repo_params()
    metrics = json.loads((REPO / "reports" / "metrics.json").read_text())

    def commit(message: str) -> None:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        (tmp_path / "reports" / "metrics.json").write_text(json.dumps(metrics))
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-qm", message], check=True)

    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["dvc", "init", "-q"], check=True)
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    commit("baseline")
    raw["model"], raw["train"]["epochs"] = "cnn_v2", 7
    metrics["test"]["macro_f1"] += 0.1
    metrics["test_ci"]["macro_f1"]["low"] += 0.1
    commit("phase")
    capfd.readouterr()
    assert show.main(["--csv", "-n", "2"]) == 0
    header = capfd.readouterr().out.splitlines()[0].split(",")
    assert {"model", "train.epochs", "test.macro_f1", "dataset", "loss", "seed"} <= set(header)
    assert not [c for c in header if c.startswith(("augment.", "test_ci.", "loss_params."))]
    assert len(header) <= 14, header


def test_a_missing_archive_fails_the_source_stage(tmp_path, monkeypatch):
    raw = repo_params()
    raw["data"]["archive"] = "my_recordings"  # meant for dataset: folder, forgotten
    assert raw["dataset"] == "synthetic"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    main = stage_module("source").main
    with pytest.raises(
        MissingInputError,
        match=r"'data\.archive' is 'my_recordings', but .*"
        r"my_recordings does not exist.*set it to null",
    ):
        main(stage_argv("source"))
    assert not (tmp_path / "data" / "source.json").exists()
