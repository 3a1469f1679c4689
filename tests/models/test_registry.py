"""Every registered model, in a tiny config: shapes, one optimisation step, checkpoint round trip."""

import pytest
import torch

from audioclf.config import load_params
from audioclf.config.models import (
    MODEL_CONFIGS,
    ASTConfig,
    EfficientNetConfig,
    EmbeddingHeadConfig,
    EncoderHeadConfig,
    ResNetConfig,
)
from audioclf.models import MODELS, build_model, count_parameters, head_and_backbone
from audioclf.models.checkpoint import load_checkpoint, save_checkpoint
from audioclf.models.cnn import CNNConfig
from audioclf.models.vit import ViTConfig

SHAPE = (32, 40)  # (n_mels, frames) of the shrunk test features
# the tiny configs of docs/models.md; no dropout, so one step's effect is measurable
TINY = {
    "cnn": CNNConfig(channels=(8, 16), hidden=8, dropout=0.0, stem_stride=1),
    "cnn_v2": CNNConfig(channels=(8, 16, 16), hidden=8, dropout=0.0, stem_stride=1),
    "cnn_se": CNNConfig(
        channels=(8, 16), hidden=8, dropout=0.0, stem_stride=1, attention="se", reduction=4
    ),
    "cnn_cbam": CNNConfig(
        channels=(8, 16), hidden=8, dropout=0.0, stem_stride=1, attention="cbam", reduction=4
    ),
    "vit": ViTConfig(patch_size=8, dim=32, depth=2, heads=2, mlp_ratio=2.0, dropout=0.0),
    "ast": ASTConfig(
        pretrained=None, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64
    ),
    "resnet50": ResNetConfig(
        pretrained=None, embedding_size=8, hidden_sizes=(8, 16), depths=(1, 1), layer_type="basic"
    ),
    "efficientnet_b2": EfficientNetConfig(
        pretrained=None,
        width_coefficient=0.1,
        depth_coefficient=0.1,
        dropout=0.0,
        drop_connect_rate=0.0,
    ),
    "birdnet": EmbeddingHeadConfig(hidden=8),  # here on (32, 40) inputs, flattened
    "embedding": EncoderHeadConfig(),
}
# the embedding heads are all head: their pretrained network is the front-end, outside the model
NO_BACKBONE = {"birdnet", "embedding"}


def test_every_model_has_a_tiny_config():
    # model=hf has no from-scratch form: tests/models/test_hf.py serves it tiny checkpoints
    assert set(TINY) == set(MODELS) - {"hf"}


@pytest.mark.parametrize("name", sorted(TINY))
def test_maps_batch_to_logits_and_one_step_lowers_loss(name):
    torch.manual_seed(0)
    model = build_model(name, TINY[name], n_classes=3, input_shape=SHAPE)
    x, y = torch.randn(8, 1, *SHAPE), torch.randint(0, 3, (8,))
    model.train()
    logits = model(x)
    assert logits.shape == (8, 3) and torch.isfinite(logits).all()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = torch.nn.functional.cross_entropy(logits, y)
    opt.zero_grad()
    before.backward()
    opt.step()
    assert torch.nn.functional.cross_entropy(model(x), y) < before
    head, backbone = head_and_backbone(model)
    assert head and (not backbone if name in NO_BACKBONE else backbone)


@pytest.mark.parametrize("name", ["cnn_cbam", "vit", "ast", "efficientnet_b2"])
def test_checkpoint_rebuilds_the_model(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, TINY[name], n_classes=3, input_shape=SHAPE).eval()
    save_checkpoint(
        tmp_path / "best.pt",
        model=model,
        model_name=name,
        model_config=TINY[name],
        labels=["a", "b", "c"],
        norm={"mean": 0.0, "std": 1.0},
        params={},
        input_shape=SHAPE,
    )
    rebuilt, _ = load_checkpoint(tmp_path / "best.pt")
    x = torch.randn(2, 1, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


def test_shipped_configs_are_valid_for_every_model():
    params = load_params("params.yaml")
    assert set(params.model_params) == set(MODEL_CONFIGS)
    assert (
        params.model_params["cnn_se"].attention == "se"
        and params.model_params["cnn_cbam"].attention == "cbam"
    )
    assert params.model_params["ast"].pretrained == "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert params.model_params["resnet50"].pretrained == "microsoft/resnet-50"
    assert params.model_params["efficientnet_b2"].pretrained == "google/efficientnet-b2"


@pytest.mark.parametrize(
    "name, expected", [("cnn_se", 356_000), ("cnn_cbam", 357_000), ("vit", 2_740_000)]
)
def test_shipped_sizes(name, expected):
    params = load_params("params.yaml")
    model = build_model(name, params.model_params[name], n_classes=24, input_shape=(128, 173))
    assert abs(count_parameters(model) - expected) / expected < 0.01
