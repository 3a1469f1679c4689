"""The MLflow Model of a scikit-learn head (logistic regression on ComParE functionals) carries its
fitted pipeline beside the checkpoint: loaded back from the store it answers as ``audioclf
predict`` does on the same audio; it has no ONNX graph, and the export says why. Needs the
opensmile extra (CI installs it)."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import mlflow
from tests.deploy.conftest import predict_rows, same_answers

from audioclf.config.heads import LogRegConfig
from audioclf.deploy.export import export
from audioclf.deploy.pyfunc import log_model
from audioclf.features.table import FeatureTable
from audioclf.tracking import resolve_store, start_run
from audioclf.training.classical import train_classical


def test_the_mlflow_model_of_a_head_answers_as_predict_does(
    functionals, tiny_dataset, tiny_params, tmp_path, monkeypatch
):
    folder, paths = functionals
    spec = dataclasses.replace(
        tiny_params.train_spec(),
        model="logreg",
        model_config=LogRegConfig(C=(1.0,)),  # one fit: choosing C is not tested here
    )
    checkpoint = tmp_path / "models" / "fold_0" / "best.pt"
    train_classical(
        spec, FeatureTable(folder), paths["train"], paths["val"], checkpoint, lambda m, s: None
    )
    data_root, _ = tiny_dataset
    files = [str(data_root / p) for p in paths["test"][:3]]
    rows = predict_rows(files, checkpoint, tmp_path / "out")
    # no ONNX graph for a scikit-learn head: the export's JSON says to serve the MLflow Model
    meta = export(checkpoint, tmp_path / "exported" / "model.onnx", tmp_path / "model.json")
    assert meta["onnx"] is None and "scikit-learn head: serve its MLflow Model" in meta["reason"]
    assert not (tmp_path / "exported" / "model.onnx").exists()

    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.chdir(store)
    with start_run(resolve_store(store, environ={}), "tiny", run_name="logreg"):
        info = log_model(checkpoint)
    # the store's copy alone: the training folder is gone
    (checkpoint.parent / "sklearn").rename(tmp_path / "moved")
    model = mlflow.pyfunc.load_model(info.model_uri)
    import pandas as pd

    b64 = [{"audio_base64": base64.b64encode(Path(f).read_bytes()).decode()} for f in files]
    answer = model.predict(pd.DataFrame(b64), params={"top_k": 2, "min_score": 0.0}).to_dict(
        orient="records"
    )
    same_answers(rows, files, answer)
