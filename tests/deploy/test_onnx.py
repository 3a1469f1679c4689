"""ONNX export: every model family exports with a dynamic batch axis and matches torch (max |logit
difference| <= 1e-4, identical top-1); a model that cannot be exported says so; the JSON beside
the graph is enough to rebuild its front-end."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch
from tests.models.test_registry import TINY

from audioclf.config import parse_params
from audioclf.config.features import FeaturesConfig
from audioclf.deploy import export
from audioclf.deploy.export import TOLERANCE, ExportError, example_features, export_onnx
from audioclf.deploy.model import Classifier, from_checkpoint
from audioclf.features.frontends import FrontEnd
from audioclf.features.store import frontend_params
from audioclf.models import build_model
from audioclf.models.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def features_cfg() -> FeaturesConfig:
    from tests.conftest import repo_params, shrink

    return parse_params(shrink(repo_params())).features


def _checkpoint(name: str, cfg: FeaturesConfig, path, seed: int = 0):
    torch.manual_seed(seed)
    shape = cfg.shape[1:]
    model = build_model(name, TINY[name], n_classes=4, input_shape=shape)
    with torch.no_grad():  # weights off their initial symmetry, so logits differ by class
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    save_checkpoint(
        path,
        model=model.eval(),
        model_name=name,
        model_config=TINY[name],
        labels=["a", "b", "c", "d"],
        norm={"kind": "global", "mean": [-40.0], "std": [12.0]},
        params={},
        input_shape=shape,
        frontend=frontend_params(cfg),
    )
    return path


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_family_exports_and_matches_torch(name, features_cfg, tmp_path):
    model = from_checkpoint(_checkpoint(name, features_cfg, tmp_path / "best.pt"))
    meta = export_onnx(model, tmp_path / "model.onnx", tmp_path / "model.json")
    assert meta["parity"]["max_abs_logit_diff"] <= TOLERANCE and meta["parity"]["top1_identical"]
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    (inp,) = session.get_inputs()
    assert inp.name == "features" and isinstance(inp.shape[0], str)  # the batch axis is dynamic
    for batch in (1, 7):  # neither the traced batch (2) nor the checked one (5)
        x = example_features(model, batch, seed=batch)
        got = session.run(["logits"], {"features": x.numpy()})[0]
        with torch.inference_mode():
            want = model.classifier(x).numpy()
        assert got.shape == (batch, 4) and want.std(axis=1).min() > 1e-3  # logits that differ
        assert np.abs(got - want).max() <= TOLERANCE
        assert (got.argmax(1) == want.argmax(1)).all()


class _NotExportable(torch.nn.Module):
    """A network with an op ONNX has no function for (an eigen-decomposition)."""

    head_prefix = "head."

    def forward(self, x):
        return torch.linalg.eigvals(x[:, 0, :4, :4]).real  # (B, 4)


def test_a_model_that_cannot_be_exported_says_so(features_cfg, tmp_path):
    model = from_checkpoint(_checkpoint("cnn", features_cfg, tmp_path / "best.pt"))
    model.classifier = Classifier(_NotExportable(), {"mean": [0.0], "std": [1.0]})
    with pytest.raises(ExportError, match="cannot be exported to ONNX: .*linalg_eig.*MLflow Model"):
        export_onnx(model, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()  # nothing half-written is left


def test_the_json_rebuilds_the_front_end_and_the_command_writes_both(features_cfg, tmp_path):
    ckpt = _checkpoint("cnn", features_cfg, tmp_path / "fold_0" / "best.pt")
    meta = export.main(["--model", str(tmp_path), "--out", str(tmp_path / "out" / "m.onnx")])
    assert json.loads((tmp_path / "out" / "m.json").read_text()) == meta
    assert meta["labels"] == ["a", "b", "c", "d"] and meta["window"]["samples"] == 16000
    frontend = FrontEnd(FeaturesConfig(**meta["frontend"]))  # the reference front-end
    rng = np.random.default_rng(1)
    windows = torch.from_numpy((0.1 * rng.standard_normal((3, 16000))).astype(np.float32))
    with torch.inference_mode():
        features = frontend(windows)
    assert list(features.shape[1:]) == meta["input"]["shape"][1:]
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "m.onnx"))
    logits = session.run(["logits"], {"features": features.numpy()})[0]
    model = from_checkpoint(ckpt)
    np.testing.assert_allclose(
        logits, model.classifier(model.featurize(windows.numpy())).detach(), atol=TOLERANCE
    )
