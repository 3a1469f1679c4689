"""Each model gets its own front-end through the stages: ``model=ast`` (a tiny checkpoint saved in
a folder) trains on Kaldi filterbanks normalised with the checkpoint's statistics; ``model=birdnet``
trains and evaluates offline on BirdNET's embeddings (with the extra); back on the CNN, the log-mel
store computes nothing."""

import json

import torch
from tests.conftest import mlflow_runs, run_stages, set_params, workspace_copy
from tests.hub import save_tiny_ast

from audioclf.features.birdnet import missing

AFTER_SPLIT = ["features", "train", "evaluate"]


def store_files(root, kind):
    return sorted(
        p.name for d in (root / "data/feature_store").glob(f"{kind}-*") for p in d.iterdir()
    )


def test_each_model_gets_its_own_front_end(pipeline, tmp_path):
    root = workspace_copy(pipeline, tmp_path / "ws")
    logmel = store_files(root, "logmel")
    assert logmel

    save_tiny_ast(root / "weights/ast", max_length=1024)
    set_params(
        root, model="ast", **{"model_params.ast.pretrained": "weights/ast", "train.epochs": 1}
    )
    run_stages(root, AFTER_SPLIT)
    features = json.loads((root / "reports/features.json").read_text())
    assert features["frontend"]["kind"] == "fbank"
    assert features["frontend"]["requested_kind"] == "auto"
    assert features["frontend"]["fixed"]["n_fft"] == [512, 400]  # the shrunk params' 512 -> 25 ms
    ckpt = torch.load(root / "models/fold_0/best.pt", weights_only=True)
    assert ckpt["frontend"]["kind"] == "fbank" and ckpt["input_shape"] == [128, 98]  # 1 s, not 1024
    assert ckpt["norm"]["mean"] == -4.0 and ckpt["norm"]["std"] == 8.0  # the checkpoint's own
    assert ckpt["model_arch"]["max_length"] == 98

    if missing() is None:  # the birdnet extra: CI installs it
        set_params(root, model="birdnet", **{"train.epochs": 3})
        run_stages(root, AFTER_SPLIT)
        metrics = json.loads((root / "reports/metrics.json").read_text())["test"]
        assert metrics["macro_f1"] > 0.5  # 6 classes: chance is ~0.17
        features = json.loads((root / "reports/features.json").read_text())
        assert features["frontend"]["kind"] == "birdnet"
    set_params(root, model="cnn")
    run_stages(root, ["features"])
    assert store_files(root, "logmel") == logmel  # the CNN's features came from the store
    report = json.loads((root / "reports/features.json").read_text())
    assert report["frontend"]["kind"] == "logmel"

    runs = {r["name"]: r for r in mlflow_runs(root) if r["status"] == "FINISHED"}
    assert runs["ast-ce"]["tags"]["features_kind"] == "fbank"
    if missing() is None:
        assert runs["birdnet-ce"]["tags"]["model_licence"] == "BirdNET v2.4: CC BY-NC-SA 4.0"
        assert "test_macro_f1" in runs["birdnet-ce"]["metrics"]
