import pytest
import torch

from audioclf.config import load_params
from audioclf.models import build_model, count_parameters
from audioclf.models.attention import CBAM, SqueezeExcite
from audioclf.models.cnn import AudioCNN, CNNConfig


@pytest.mark.parametrize("name, expected", [("cnn", 343_000), ("cnn_v2", 4_200_000)])
def test_shipped_configs_have_the_documented_size(name, expected):
    params = load_params("params.yaml")
    model = build_model(name, params.model_params[name], n_classes=24)
    assert abs(count_parameters(model) - expected) / expected < 0.02


@pytest.mark.parametrize("channels", [(8, 16), (8, 16, 16, 32, 32)])
@pytest.mark.parametrize("attention", ["none", "se", "cbam"])
def test_maps_batch_to_logits(channels, attention):
    model = AudioCNN(CNNConfig(channels=channels, hidden=8, attention=attention), n_classes=5)
    assert model(torch.randn(3, 1, 32, 40)).shape == (3, 5)


@pytest.mark.parametrize("block", [SqueezeExcite(16, 4), CBAM(16, 4)])
def test_attention_rescales_without_changing_shape(block):
    x = torch.rand(2, 16, 8, 10)
    out = block(x)
    assert out.shape == x.shape
    assert (out <= x + 1e-6).all() and (
        out >= 0
    ).all()  # sigmoid gates in (0, 1) on non-negative input


def test_attention_variants_are_configs_of_one_class():
    plain, se = (
        AudioCNN(CNNConfig(channels=(8, 16), hidden=8, attention=a), n_classes=3)
        for a in ("none", "se")
    )
    assert type(plain) is type(se)
    assert not any(isinstance(m, SqueezeExcite) for m in plain.modules())
    assert sum(isinstance(m, SqueezeExcite) for m in se.modules()) == 2


def test_one_step_lowers_loss():
    torch.manual_seed(0)
    model = AudioCNN(CNNConfig(channels=(8, 16), hidden=8, dropout=0.0), n_classes=3)
    x, y = torch.randn(8, 1, 32, 40), torch.randint(0, 3, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    before = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = torch.nn.functional.cross_entropy(model(x), y)
    assert after < before


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="dropout' must be in"):
        CNNConfig(dropout=1.0)
    with pytest.raises(ValueError, match="attention' is 'sk'; allowed values: cbam, none, se"):
        CNNConfig(attention="sk")
    with pytest.raises(ValueError, match="n_classes must be >= 2, got 1"):
        AudioCNN(CNNConfig(), n_classes=1)
