"""Pretrained weights that are not here fail at once, saying how to get them; never a random init."""

import pytest
import torch

from audioclf.config.models import ASTConfig, EfficientNetConfig, ResNetConfig
from audioclf.hub import PretrainedWeightsError
from audioclf.models import build_model

SHAPE = (32, 40)


@pytest.mark.parametrize(
    "name, cfg",
    [
        ("ast", ASTConfig(pretrained="no-such-org/no-such-model", revision="abc123")),
        ("resnet50", ResNetConfig(pretrained="no-such-org/no-such-model", revision="abc123")),
    ],
)
def test_uncached_hub_name_offline_says_how_to_get_it(name, cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(PretrainedWeightsError) as err:
        build_model(name, cfg, n_classes=3, input_shape=SHAPE)
    message = str(err.value)
    assert (
        f"model_params.{name}.pretrained: 'no-such-org/no-such-model' at revision 'abc123' is not "
        f"in the Hugging Face cache ({tmp_path}) and downloads are off (HF_HUB_OFFLINE)" in message
    )
    assert "`hf download no-such-org/no-such-model --revision abc123 --include" in message
    assert f"model_params.{name}.pretrained=null to train from scratch" in message


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="holds no Hugging Face model .*found nothing"):
        build_model("ast", ASTConfig(pretrained=str(tmp_path)), n_classes=3, input_shape=SHAPE)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="folder '.*/nowhere' does not exist"):
        build_model(
            "efficientnet_b2",
            EfficientNetConfig(pretrained=str(tmp_path / "nowhere")),
            n_classes=3,
            input_shape=SHAPE,
        )


@pytest.fixture(scope="module")
def saved_resnet(tmp_path_factory):
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    model = ResNetForImageClassification(
        ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=10
        )
    )
    folder = tmp_path_factory.mktemp("resnet")
    model.save_pretrained(folder)
    return folder, model.state_dict()


def test_imagenet_model_keeps_backbone_and_repeats_the_channel(saved_resnet):
    folder, source = saved_resnet
    model = build_model(
        "resnet50", ResNetConfig(pretrained=str(folder)), n_classes=3, input_shape=SHAPE
    )
    state = model.net.state_dict()
    assert {
        k
        for k in state
        if not torch.equal(state[k], source[k]) or state[k].shape != source[k].shape
    } == {"classifier.1.weight", "classifier.1.bias"}
    x = torch.randn(2, 1, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval()(x), model.net(pixel_values=x.repeat(1, 3, 1, 1)).logits
        )


def test_weights_of_another_architecture_are_refused(saved_resnet):
    folder, _ = saved_resnet
    with pytest.raises(
        PretrainedWeightsError, match="lacks .* weights outside the classifier head"
    ):
        build_model(
            "efficientnet_b2",
            EfficientNetConfig(pretrained=str(folder)),
            n_classes=3,
            input_shape=SHAPE,
        )
