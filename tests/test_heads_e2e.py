"""End to end through DVC: ``dvc exp run -S model=svm`` computes openSMILE's ComParE functionals
(features.kind auto), chooses C on validation and evaluates like a network; with
``train.norm=group`` the metrics and the MLflow run say it is transductive, and neither an MLflow
Model nor an ONNX graph is made of it. Needs the opensmile extra (CI installs it)."""

import json

import pytest
from tests.conftest import mlflow_runs, run

from audioclf.features.opensmile import LICENCE, missing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing() is not None, reason=f"the opensmile extra: {missing()}"),
]


def test_a_linear_svm_on_compare_through_dvc(project):
    root, env = project
    run(["dvc", "repro"], root, env)
    run(["dvc", "exp", "run", "-n", "svm", "-S", "model=svm"], root, env)
    features = json.loads((root / "reports/features.json").read_text())
    assert features["frontend"]["kind"] == "compare"
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["test"]["macro_f1"] > 0.5  # 6 classes: chance is ~0.17
    assert metrics["input_norm"] == "global" and metrics["transductive"] is False
    assert (root / "models/fold_0/sklearn/MLmodel").is_file()
    train = json.loads((root / "reports/train.json").read_text())
    assert train["selected"]["C"] in (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0)

    runs = {
        r["tags"].get("dvc_exp_name"): r for r in mlflow_runs(root) if r["status"] == "FINISHED"
    }
    assert runs["svm"]["tags"]["features_licence"] == LICENCE
    assert (
        runs["svm"]["tags"]["train_norm"] == "global" and "transductive" not in runs["svm"]["tags"]
    )
    assert "test_macro_f1" in runs["svm"]["metrics"]


def test_a_group_normalised_svm_through_dvc(project):
    root, env = project
    run(["dvc", "repro"], root, env)
    run(
        # small C only: on the synthetic data (one species per group) group norm leaves little to
        # separate, and libsvm's linear kernel takes minutes at large C without converging
        ["dvc", "exp", "run", "-n", "svm-group", "-S", "model=svm", "-S", "train.norm=group"]
        + ["-S", "model_params.svm.C=[0.0001,0.001]"],
        root,
        env,
    )
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["input_norm"] == "group" and metrics["transductive"] is True

    runs = {r["tags"].get("dvc_exp_name"): r for r in mlflow_runs(root)}
    assert runs["svm-group"]["tags"]["transductive"] == "true"
    # no one normalisation for new recordings: no MLflow Model, no ONNX graph, each says why
    assert runs["svm-group"]["tags"]["mlflow_model"].startswith("not logged: ")
    exported = json.loads((root / "exported/model.json").read_text())
    assert exported["onnx"] is None and "train.norm=group" in exported["reason"]
