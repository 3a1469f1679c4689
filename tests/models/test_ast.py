"""AST: positional-embedding interpolation and loading a (locally saved) pretrained model."""

import pytest
import torch

from audioclf.config.models import ASTConfig
from audioclf.hub import PretrainedWeightsError
from audioclf.models import build_model
from audioclf.models.ast import interpolate_position_embeddings, patch_grid

SHAPE = (32, 40)


def test_patch_grid_matches_the_audioset_model():
    assert patch_grid(128, 1024, 16, 10, 10) == (12, 101)  # 1212 patches, as in the paper
    assert patch_grid(128, 173, 16, 10, 10) == (12, 16)  # a 4-s clip: 192 patches


def test_interpolation_keeps_special_tokens_and_shapes():
    pos = torch.randn(1, 2 + 12 * 101, 8)
    out = interpolate_position_embeddings(pos, (12, 101), (12, 16))
    assert out.shape == (1, 2 + 12 * 16, 8) and torch.isfinite(out).all()
    torch.testing.assert_close(out[:, :2], pos[:, :2])
    same = interpolate_position_embeddings(pos, (12, 101), (12, 101))
    torch.testing.assert_close(same, pos)


def test_interpolation_is_smooth_along_time():
    # embeddings linear in the time index stay linear (bilinear interpolation of a ramp)
    t = torch.linspace(0, 1, 20)
    grid = t[None, :, None].expand(3, 20, 4)  # (F, T, D)
    pos = torch.cat([torch.zeros(2, 4), grid.reshape(-1, 4)])[None]
    out = interpolate_position_embeddings(pos, (3, 20), (3, 7))[0, 2:].reshape(3, 7, 4)
    assert (out[:, 1:, 0] > out[:, :-1, 0]).all()
    torch.testing.assert_close(out[0], out[2])


def test_wrong_grid_is_refused():
    with pytest.raises(ValueError, match="position embeddings hold 10 patches"):
        interpolate_position_embeddings(torch.zeros(1, 12, 4), (3, 4), (2, 2))


@pytest.fixture(scope="module")
def saved_ast(tmp_path_factory):
    """A tiny 'pretrained' AST saved as transformers does: 64 frames, 32 mels, 7 classes."""
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    model = ASTForAudioClassification(
        ASTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_length=64,
            num_mel_bins=32,
            num_labels=7,
        )
    )
    torch.nn.init.normal_(model.audio_spectrogram_transformer.embeddings.position_embeddings)
    folder = tmp_path_factory.mktemp("ast")
    model.save_pretrained(folder)
    return folder, model.state_dict()


def test_pretrained_loads_everything_but_the_head_and_resizes_positions(saved_ast):
    folder, source = saved_ast
    model = build_model("ast", ASTConfig(pretrained=str(folder)), n_classes=3, input_shape=SHAPE)
    net = model.net
    assert net.config.max_length == SHAPE[1]  # not padded to the pretrained 64 frames
    pos = net.audio_spectrogram_transformer.embeddings.position_embeddings
    assert pos.shape == (1, 2 + 2 * 3, 32)  # grid (32-16)//10+1 x (40-16)//10+1
    key = "audio_spectrogram_transformer.embeddings.position_embeddings"
    torch.testing.assert_close(pos[:, :2], source[key][:, :2])
    differs = {
        k
        for k, v in net.state_dict().items()
        if k not in source or v.shape != source[k].shape or not torch.equal(v, source[k])
    }
    assert differs == {key, "classifier.dense.weight", "classifier.dense.bias"}
    out = model(torch.randn(2, 1, *SHAPE))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_pretrained_needs_its_mel_bins(saved_ast):
    folder, _ = saved_ast
    with pytest.raises(
        PretrainedWeightsError,
        match="expects 32 mel bins, the features have 64; set features.n_mels=32",
    ):
        build_model("ast", ASTConfig(pretrained=str(folder)), n_classes=3, input_shape=(64, 40))


def test_checkpoint_of_a_pretrained_model_rebuilds_offline(saved_ast, tmp_path):
    from audioclf.models.checkpoint import load_checkpoint, save_checkpoint

    folder, _ = saved_ast
    cfg = ASTConfig(pretrained=str(folder))
    model = build_model("ast", cfg, n_classes=3, input_shape=SHAPE).eval()
    save_checkpoint(
        tmp_path / "best.pt",
        model=model,
        model_name="ast",
        model_config=cfg,
        labels=["a", "b", "c"],
        norm={"mean": 0.0, "std": 1.0},
        params={},
        input_shape=SHAPE,
    )
    for f in folder.iterdir():  # the weights are gone: the checkpoint alone must do
        f.unlink()
    rebuilt, _ = load_checkpoint(tmp_path / "best.pt")
    x = torch.randn(2, 1, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
