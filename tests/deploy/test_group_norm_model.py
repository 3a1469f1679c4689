"""A model trained with ``train.norm: group`` has no one input normalisation for new recordings:
loading it for predict says so and names the fix, evaluate logs its metrics but neither logs nor
registers an MLflow Model, and the export stage writes a JSON saying why there is no ONNX graph
(``audioclf export`` too, and then ends with that reason)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mlflow
import pytest
from tests.deploy.conftest import train_tiny

from audioclf.config.evaluation import EvaluateConfig
from audioclf.deploy import export
from audioclf.deploy.export import ExportError
from audioclf.deploy.model import ModelError, load_model
from audioclf.evaluation.evaluate import evaluate_folds, log_evaluation
from audioclf.features.table import FeatureTable
from audioclf.tracking import Runs, resolve_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def group_trained(tiny_cache, tmp_path_factory):
    """A CNN trained for two epochs on the tiny set with per-group statistics: (models folder,
    table, test files)."""
    models = tmp_path_factory.mktemp("group") / "models"
    train_tiny(tiny_cache, models / "fold_0" / "best.pt", epochs=2, norm="group")
    cache, splits = tiny_cache
    return models, FeatureTable(cache), [e.path for e in splits["test"]]


def test_loading_it_for_new_recordings_names_the_problem_and_the_fix(group_trained):
    models, _, _ = group_trained
    for source in (models, models / "fold_0" / "best.pt"):
        with pytest.raises(ModelError, match=r"train\.norm=group.*retrain with train\.norm=global"):
            load_model(source)


def test_evaluate_logs_its_metrics_and_no_model(group_trained, tmp_path, monkeypatch):
    models, table, test = group_trained
    out = evaluate_folds(
        [models / "fold_0" / "best.pt"],
        table,
        [test],
        cfg=EvaluateConfig(bootstrap=10),  # the intervals are not what is tested here
        seed=0,
        train_counts=dict.fromkeys(table.labels, 10.0),
    )
    assert out["summary"]["transductive"] is True
    monkeypatch.chdir(tmp_path)
    log_evaluation(Runs(resolve_store(tmp_path, environ={}), "tiny", "cnn-ce"), out, [])
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("audioclf-tiny").experiment_id])
    assert run.data.metrics["test_macro_f1"] == pytest.approx(out["summary"]["test"]["macro_f1"])
    assert run.data.tags["mlflow_model"].startswith("not logged: it was trained with train.norm")
    assert client.search_registered_models() == []
    assert client.search_logged_models([run.info.experiment_id]) == []


def test_the_export_stage_writes_why_there_is_no_onnx_graph_and_the_command_refuses(
    group_trained, tmp_path
):
    models, _, _ = group_trained
    spec = importlib.util.spec_from_file_location("export_stage", REPO / "stages/export.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    out = tmp_path / "exported"
    meta = stage.main(
        ["--models", str(models), "--split", str(tmp_path / "no-split")]
        + ["--out", str(out / "model.onnx"), "--meta", str(out / "model.json")]
    )
    assert json.loads((out / "model.json").read_text()) == meta
    assert meta["onnx"] is None and meta["model"] == "cnn" and "train.norm=group" in meta["reason"]
    assert not (out / "model.onnx").exists()
    # the command takes the stage's path: the same JSON, then it ends naming the fix
    with pytest.raises(ExportError, match=r"no ONNX graph .*retrain with train\.norm=global"):
        export.main(["--model", str(models), "--out", str(tmp_path / "command" / "model.onnx")])
    assert json.loads((tmp_path / "command" / "model.json").read_text()) == meta
