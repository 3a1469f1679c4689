import pytest
import torch

from audioclf.config import ParamsError
from audioclf.models.vit import SpecViT, ViTConfig

TINY = ViTConfig(patch_size=8, dim=16, depth=1, heads=2, dropout=0.0)


def test_pads_to_whole_patches_and_positions_fit_the_grid():
    model = SpecViT(TINY, n_classes=4, input_shape=(30, 41))  # 4 x 6 patches after padding
    assert model.grid == (4, 6) and model.pos.shape == (1, 1 + 24, 16)
    assert model(torch.randn(2, 1, 30, 41)).shape == (2, 4)


def test_batch_equals_items_one_by_one():
    torch.manual_seed(0)
    model = SpecViT(TINY, n_classes=3, input_shape=(16, 24)).eval()
    x = torch.randn(3, 1, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x), torch.cat([model(x[i : i + 1]) for i in range(3)]), rtol=1e-5, atol=1e-5
        )


def test_wrong_input_shape_and_config_are_named():
    model = SpecViT(TINY, n_classes=3, input_shape=(16, 24))
    with pytest.raises(
        ValueError, match=r"built for inputs of \(n_mels, frames\) \(16, 24\), got \(16, 25\)"
    ):
        model(torch.randn(1, 1, 16, 25))
    with pytest.raises(
        ParamsError, match="'model_params.vit.heads' must divide model_params.vit.dim=16, got 3"
    ):
        ViTConfig(dim=16, heads=3)
    with pytest.raises(ValueError, match="needs input_shape"):
        SpecViT(TINY, n_classes=3)
