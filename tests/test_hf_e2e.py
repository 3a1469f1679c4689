"""``model=hf`` through the stages: a tiny wav2vec 2.0 checkpoint named by its Hub id and pinned
commit is downloaded from the Hub stand-in by the first run, trained on the stored waveform and
evaluated; the run records id, commit and weight hash; a later run with the Hub gone and
downloads off trains from the cache, and the saved model predicts files. The same encoder
frozen, as a front-end: one layer under the scikit-learn and torch heads, and every layer
under the torch head's learned weighted sum, which predicts and serves offline too."""

import base64
import hashlib
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from tests.conftest import mlflow_runs, run_stages, set_params, workspace_copy
from tests.deploy.conftest import predict_rows, same_answers
from tests.hub import HubStandIn
from tests.models.test_hf import tiny_wav2vec2

from audioclf.deploy import predict

AFTER_SPLIT = ["features", "train", "evaluate", "export"]


def _workspace_and_weights(pipeline, tmp_path, monkeypatch):
    """A workspace copy, a tiny wav2vec 2.0 checkpoint folder, and an empty Hugging Face cache."""
    root = workspace_copy(pipeline, tmp_path / "ws")
    weights = tmp_path / "wav2vec2"
    torch.manual_seed(0)
    tiny_wav2vec2(weights)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return root, weights


def test_hf_checkpoint_by_hub_id_trains_then_reruns_offline(pipeline, tmp_path, monkeypatch):
    root, weights = _workspace_and_weights(pipeline, tmp_path, monkeypatch)
    with HubStandIn() as hub:
        commit = hub.add("tiny/wav2vec2", weights)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        set_params(
            root,
            model="hf",
            **{
                "model_params.hf.pretrained": "tiny/wav2vec2",
                "model_params.hf.revision": commit,
                "model_params.hf.freeze_feature_encoder": False,  # the tiny one's is random
                "train.epochs": 2,
            },
        )
        run_stages(root, AFTER_SPLIT)
        assert any(r.endswith("/model.safetensors") for r in hub.requests)

    features = json.loads((root / "reports/features.json").read_text())
    assert features["frontend"]["kind"] == "waveform"
    ckpt = torch.load(root / "models/fold_0/best.pt", weights_only=True)
    assert ckpt["model_name"] == "hf" and ckpt["input_shape"] == [1, 16000]  # 1 s at 16 kHz
    assert ckpt["model_arch"]["extractor"]["feature_extractor_type"] == "Wav2Vec2FeatureExtractor"
    metrics = json.loads((root / "reports/metrics.json").read_text())["test"]
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    exported = json.loads((root / "exported/model.json").read_text())
    assert exported["onnx"] is None and "model=hf" in exported["reason"]
    runs = [r for r in mlflow_runs(root) if r["name"] == "hf-ce" and r["status"] == "FINISHED"]
    sha = hashlib.sha256((weights / "model.safetensors").read_bytes()).hexdigest()
    assert runs and runs[0]["tags"]["pretrained_commit"] == commit
    assert runs[0]["tags"]["pretrained_sha256"] == sha

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub is gone too: the cache alone serves
    set_params(root, **{"train.epochs": 1})
    run_stages(root, ["train"])
    assert torch.load(root / "models/fold_0/best.pt", weights_only=True)["model_name"] == "hf"

    folder = tmp_path / "recordings"  # and the saved model predicts files with no Hub either
    folder.mkdir()
    for wav in sorted((root / "data").rglob("*.wav"))[:3]:
        (folder / wav.name).write_bytes(wav.read_bytes())
    summary = predict.main(
        [str(folder), "--model", str(root / "models/fold_0/best.pt"), "--out", str(tmp_path / "p")]
    )
    rows = (tmp_path / "p/summary.csv").read_text().strip().splitlines()
    assert len(rows) == 4, (summary, rows)  # a header and the three files


def test_frozen_encoder_embeddings_under_a_logistic_head(pipeline, tmp_path, monkeypatch):
    root, weights = _workspace_and_weights(pipeline, tmp_path, monkeypatch)
    with HubStandIn() as hub:
        commit = hub.add("tiny/wav2vec2", weights, branch="main")
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        encoder = {"encoder": "tiny/wav2vec2", "encoder_revision": "main", "encoder_layer": 1}
        set_params(root, model="logreg", **{f"features.{k}": v for k, v in encoder.items()})
        set_params(root, **{"features.kind": "hf"})
        run_stages(root, ["features", "train", "evaluate", "export"])

    report = json.loads((root / "reports/features.json").read_text())
    assert report["frontend"]["fixed"]["encoder_revision"] == ["main", commit]
    frontend = json.loads((root / "data/features/meta.json").read_text())["frontend"]
    sha = hashlib.sha256((weights / "model.safetensors").read_bytes()).hexdigest()
    assert frontend["kind"] == "hf" and frontend["sample_rate"] == 16000
    assert frontend["encoder_revision"] == commit  # the branch, pinned to what it stood at
    assert frontend["encoder_dim"] == 32 and frontend["encoder_sha256"] == sha
    metrics = json.loads((root / "reports/metrics.json").read_text())["test"]
    assert metrics["macro_f1"] > 0.5  # it learned: 6 classes, chance is ~0.17
    (run,) = [r for r in mlflow_runs(root) if r["name"] == "logreg-ce"]
    assert run["tags"]["encoder_commit"] == commit and run["tags"]["encoder_sha256"] == sha

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the torch head, on the stored embeddings
    set_params(
        root, model="embedding", **{"features.kind": "auto", "train.epochs": 40, "train.lr": 0.03}
    )
    run_stages(root, ["features", "train", "evaluate"])
    again = json.loads((root / "reports/features.json").read_text())
    assert again["frontend"]["kind"] == "hf" and again["frontend_key"] == report["frontend_key"]
    head = json.loads((root / "reports/metrics.json").read_text())["test"]
    assert head["macro_f1"] > 0.5, head

    set_params(root, model="logreg", **{"features.kind": "hf"})  # its head predicts files
    folder = tmp_path / "recordings"
    folder.mkdir()
    for wav in sorted((root / "data").rglob("*.wav"))[:3]:
        (folder / wav.name).write_bytes(wav.read_bytes())
    model = root / "models/fold_0/best.pt"  # the head beside it, in sklearn/
    predict.main([str(folder), "--model", str(model), "--out", str(tmp_path / "p")])
    rows = (tmp_path / "p/summary.csv").read_text().strip().splitlines()
    assert len(rows) == 4, rows  # a header and the three files


def test_a_learned_weighted_sum_of_every_layer_under_the_embedding_head(
    pipeline, tmp_path, monkeypatch
):
    root, weights = _workspace_and_weights(pipeline, tmp_path, monkeypatch)
    with HubStandIn() as hub:
        hub.add("tiny/wav2vec2", weights, branch="main")
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        encoder = {"encoder": "tiny/wav2vec2", "encoder_revision": "main", "encoder_layer": "all"}
        set_params(root, model="embedding", **{f"features.{k}": v for k, v in encoder.items()})
        set_params(root, **{"train.epochs": 40, "train.lr": 0.03})
        run_stages(root, ["features", "train", "evaluate", "export"])

    frontend = json.loads((root / "data/features/meta.json").read_text())["frontend"]
    assert frontend["encoder_layer"] == "all" and frontend["encoder_depth"] == 2
    ckpt = torch.load(root / "models/fold_0/best.pt", weights_only=True)
    assert ckpt["in_channels"] == 3 and ckpt["input_shape"] == [32, 1]  # (L + 1, D, 1)
    learned = ckpt["state_dict"]["layer_logits"].softmax(dim=0)
    assert abs(float(learned.sum()) - 1) < 1e-6 and float(learned.max() - learned.min()) > 0.01
    metrics = json.loads((root / "reports/metrics.json").read_text())["test"]
    assert metrics["macro_f1"] > 0.5, metrics  # it learned: 6 classes, chance is ~0.17
    (run,) = [r for r in mlflow_runs(root) if r["name"] == "embedding-ce"]
    logged = json.loads(
        (Path(run["artifact_uri"].removeprefix("file://")) / "layer_weights.json").read_text()
    )
    assert logged["layer_weights"] == pytest.approx(learned.tolist())
    exported = json.loads((root / "exported/model.json").read_text())
    assert exported["input"]["shape"] == ["batch", 3, 32, 1]  # the weighted sum is in the graph
    assert exported["parity"]["top1_identical"]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub is gone: the cache alone serves
    files = [str(wav) for wav in sorted((root / "data").rglob("*.wav"))[:3]]
    rows = predict_rows(files, root / "models/fold_0/best.pt", tmp_path / "p")
    assert {r["file"] for r in rows} == set(files)
    model = mlflow.pyfunc.load_model(
        mlflow.artifacts.download_artifacts(
            run["tags"]["mlflow_model"],
            dst_path=str(tmp_path / "pyfunc"),
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        )
    )
    b64 = [{"audio_base64": base64.b64encode(Path(f).read_bytes()).decode()} for f in files]
    answer = model.predict(pd.DataFrame(b64), params={"top_k": 2, "min_score": 0.0})
    same_answers(rows, files, answer.to_dict(orient="records"))  # the MLflow Model answers alike
