"""The head on embeddings (model: birdnet, embedding): shapes, linear or one hidden layer, that it
learns, and on every layer of an encoder the softmax-weighted sum of the layers (SUPERB's)."""

import pytest
import torch

from audioclf.config.models import EmbeddingHeadConfig, EncoderHeadConfig
from audioclf.models import build_model, head_and_backbone
from audioclf.models.head import layer_weights


@pytest.mark.parametrize("hidden, n_params", [(0, 1024 * 3 + 3), (16, 1024 * 16 + 16 + 16 * 3 + 3)])
def test_linear_or_one_hidden_layer(hidden, n_params):
    model = build_model(
        "birdnet", EmbeddingHeadConfig(hidden=hidden), n_classes=3, input_shape=(1024, 1)
    )
    assert model(torch.randn(5, 1, 1024, 1)).shape == (5, 3)
    head, backbone = head_and_backbone(model)
    assert sum(p.numel() for p in head) == n_params and backbone == []  # all of it trains at lr


def test_it_learns_classes_apart_in_embedding_space():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 1024, generator=g)
    y = torch.arange(200) % 4
    x = (centres[y] + 2.0 * torch.randn(200, 1024, generator=g)).relu()[:, None, :, None]
    torch.manual_seed(0)
    model = build_model("birdnet", EmbeddingHeadConfig(dropout=0.1), 4, input_shape=(1024, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = (model(x).argmax(1) == y).float().mean()
    for _ in range(40):  # all right from about step 15 on
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    after = (model(x).argmax(1) == y).float().mean()
    assert before < 0.5 and after == 1.0


def test_the_head_needs_the_embedding_size():
    with pytest.raises(ValueError, match="needs input_shape"):
        build_model("birdnet", EmbeddingHeadConfig(), n_classes=3)


def stacked_head(layers: int = 4, dim: int = 8, n_classes: int = 3) -> torch.nn.Module:
    return build_model(
        "embedding", EncoderHeadConfig(), n_classes, in_channels=layers, input_shape=(dim, 1)
    )


def test_on_every_layer_it_sums_them_with_softmax_weights_that_train_with_the_head():
    torch.manual_seed(0)
    model = stacked_head()
    weights = model.layer_weights()
    torch.testing.assert_close(weights, torch.full((4,), 0.25))  # uniform at first
    x = torch.randn(5, 4, 8, 1)  # (B, L + 1, D, 1)
    torch.testing.assert_close(model(x), model.head(x.mean(dim=1).flatten(1)))
    head, backbone = head_and_backbone(model)
    assert any(p is model.layer_logits for p in head) and backbone == []
    with torch.no_grad():
        model.layer_logits.copy_(torch.tensor([0.0, 3.0, -1.0, 1.0]))
    weights = model.layer_weights().detach()
    assert float(weights.sum()) == pytest.approx(1.0) and int(weights.argmax()) == 1
    expected = model.head((weights[None, :, None, None] * x).sum(dim=1).flatten(1))
    torch.testing.assert_close(model(x), expected)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0, 1])).backward()
    assert model.layer_logits.grad is not None and model.layer_logits.grad.abs().sum() > 0
    assert layer_weights(model.state_dict()) == pytest.approx(weights.tolist())


def test_it_learns_to_weigh_the_layer_that_tells_classes_apart():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(240) % 3
    x = torch.randn(240, 4, 8, 1, generator=g)  # noise in every layer ...
    x[:, 2, :3, 0] += 3.0 * torch.nn.functional.one_hot(y, 3)  # ... but layer 2 holds the class
    torch.manual_seed(0)
    model = stacked_head()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    weights = model.layer_weights().detach()
    assert int(weights.argmax()) == 2 and weights[2] > 0.5, weights
    assert (model(x).argmax(1) == y).float().mean() > 0.9


def test_on_one_layer_it_is_the_plain_head_of_before():
    model = stacked_head(layers=1, dim=32)
    assert model.layer_weights() is None and layer_weights(model.state_dict()) is None
    # a checkpoint written before the weighted sum existed loads as it did
    assert set(model.state_dict()) == {"head.1.weight", "head.1.bias"}
    assert model(torch.randn(2, 1, 32, 1)).shape == (2, 3)
