"""The pipeline's stages with ``model=svm``: openSMILE's ComParE functionals (features.kind auto),
C chosen on validation and evaluated like a network; with ``train.norm=group`` the metrics and the
MLflow run say it is transductive, and neither an MLflow Model nor an ONNX graph is made of it.
Needs the opensmile extra (CI installs it)."""

import json

import pytest
from tests.conftest import mlflow_runs, run_stages, workspace_copy

from audioclf.features.opensmile import LICENCE, missing

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"the opensmile extra: {missing()}")
AFTER_SPLIT = ["features", "train", "evaluate", "export"]


def test_a_linear_svm_on_compare(pipeline, tmp_path):
    root = workspace_copy(pipeline, tmp_path / "svm", model="svm")
    run_stages(root, AFTER_SPLIT)
    features = json.loads((root / "reports/features.json").read_text())
    assert features["frontend"]["kind"] == "compare"
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["test"]["macro_f1"] > 0.5  # 6 classes: chance is ~0.17
    assert metrics["input_norm"] == "global" and metrics["transductive"] is False
    assert (root / "models/fold_0/sklearn/MLmodel").is_file()
    train = json.loads((root / "reports/train.json").read_text())
    assert train["selected"]["C"] in (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0)

    (svm,) = [r for r in mlflow_runs(root) if r["name"] == "svm-ce"]
    assert svm["status"] == "FINISHED" and svm["tags"]["features_licence"] == LICENCE
    assert svm["tags"]["train_norm"] == "global" and "transductive" not in svm["tags"]
    assert "test_macro_f1" in svm["metrics"]


def test_a_group_normalised_svm(pipeline, tmp_path):
    # small C only: on the synthetic data (one species per group) group norm leaves little to
    # separate, and libsvm's linear kernel takes minutes at large C without converging
    small_c = {"train.norm": "group", "model_params.svm.C": [0.0001, 0.001]}
    root = workspace_copy(pipeline, tmp_path / "group", model="svm", **small_c)
    run_stages(root, AFTER_SPLIT)
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["input_norm"] == "group" and metrics["transductive"] is True

    (svm,) = [r for r in mlflow_runs(root) if r["name"] == "svm-ce"]
    assert svm["tags"]["transductive"] == "true"
    # no one normalisation for new recordings: no MLflow Model, no ONNX graph, each says why
    assert svm["tags"]["mlflow_model"].startswith("not logged: ")
    exported = json.loads((root / "exported/model.json").read_text())
    assert exported["onnx"] is None and "train.norm=group" in exported["reason"]
