"""The head on embeddings (model: birdnet): shapes, linear or one hidden layer, and that it learns."""

import pytest
import torch

from audioclf.config.models import EmbeddingHeadConfig
from audioclf.models import build_model, head_and_backbone


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
