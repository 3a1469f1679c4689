"""The pretrained models' front-ends: AST's Kaldi filterbanks against transformers' ASTFeatureExtractor,
the log-mel as an ImageNet image, and the checkpoints' input statistics."""

import json

import numpy as np
import pytest
import torch

from audioclf.config.features import FeaturesConfig
from audioclf.config.models import ASTConfig, EfficientNetConfig, ResNetConfig
from audioclf.features.frontends import FrontEnd, LogMel
from audioclf.features.table import stat_tensor
from audioclf.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, input_statistics

FBANK = FeaturesConfig(
    kind="fbank", sample_rate=16000, n_fft=400, hop_length=160, n_mels=128, f_min=20.0,
    segment_seconds=2.0,
)  # fmt: skip
# AST's extractor and this front-end are the same torchaudio call; what differs is float32
# arithmetic order in the normalisation (numpy against torch): a few ulps of values ~1
PARITY_ATOL = 1e-5


def waves(n: int, samples: int, seed: int = 0) -> np.ndarray:
    """Tones in noise, one of them a short clip zero-padded to the segment (as the store holds it)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    out = np.stack(
        [
            0.3 * np.sin(2 * np.pi * rng.uniform(100, 6000) * t)
            + 0.05 * rng.standard_normal(samples)
            for _ in range(n)
        ]
    ).astype(np.float32)
    out[-1, samples // 3 :] = 0.0
    return out


def folder_with(tmp_path, name, processor=None):
    """A checkpoint folder as resolve_source accepts it (config and a weights file), optionally with
    a saved feature extractor or image processor."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    if processor is not None:
        processor.save_pretrained(folder)
    return str(folder)


def test_fbank_equals_ast_feature_extractor(tmp_path):
    from transformers import ASTFeatureExtractor

    x = waves(3, FBANK.segment_samples)
    feats = FrontEnd(FBANK)(torch.from_numpy(x))  # (3, 1, 128, T)
    assert feats.shape == (3, *FBANK.shape) == (3, 1, 128, 198)
    norm = input_statistics("ast", ASTConfig(pretrained=folder_with(tmp_path, "ast")), "fbank")
    assert norm["source"] == "defaults"
    ours = ((feats - stat_tensor(norm["mean"])) / stat_tensor(norm["std"]))[:, 0].transpose(1, 2)
    extractor = ASTFeatureExtractor(max_length=FBANK.n_frames)  # constructed here: no download
    ref = extractor(list(x), sampling_rate=16000, return_tensors="np")[
        "input_values"
    ]  # (3, T, 128)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=PARITY_ATOL)


def test_fbank_normalisation_is_the_checkpoints_own(tmp_path):
    from transformers import ASTFeatureExtractor

    folder = folder_with(tmp_path, "ast", ASTFeatureExtractor(mean=-3.0, std=2.5))
    norm = input_statistics("ast", ASTConfig(pretrained=folder), "fbank")
    assert norm == {
        "kind": "pretrained",
        "mean": -3.0,
        "std": 5.0,  # ASTFeatureExtractor divides by twice its std
        "source": f"{folder}/preprocessor_config.json",
    }
    x = waves(2, FBANK.segment_samples, seed=1)
    extractor = ASTFeatureExtractor(mean=-3.0, std=2.5, max_length=FBANK.n_frames)
    ref = extractor(list(x), sampling_rate=16000, return_tensors="np")["input_values"]
    ours = (FrontEnd(FBANK)(torch.from_numpy(x)) - norm["mean"]) / norm["std"]
    np.testing.assert_allclose(ours[:, 0].transpose(1, 2).numpy(), ref, atol=PARITY_ATOL)


def test_from_scratch_or_off_its_front_end_uses_the_training_split():
    assert input_statistics("ast", ASTConfig(pretrained=None), "fbank") is None
    assert input_statistics("ast", ASTConfig(pretrained=None), "logmel") is None
    assert input_statistics("cnn", object(), "logmel") is None


IMAGE = FeaturesConfig(kind="imagenet", sample_rate=16000, n_fft=512, hop_length=256, n_mels=64,
                       segment_seconds=1.0)  # fmt: skip


def test_imagenet_image_is_the_log_mel_in_unit_range_and_resizes():
    x = torch.from_numpy(waves(3, IMAGE.segment_samples))
    image = FrontEnd(IMAGE)(x)  # (3, 1, 64, 63)
    assert image.shape == (3, *IMAGE.shape) == (3, 1, 64, 63)
    db = LogMel(IMAGE)(x)
    expected = (db - db.amax(dim=(1, 2), keepdim=True)) / IMAGE.top_db + 1
    torch.testing.assert_close(image[:, 0], expected)
    assert image.amin() >= 0 and torch.allclose(image.amax(dim=(1, 2, 3)), torch.ones(3))
    square = FeaturesConfig(**{**IMAGE.__dict__, "image_size": 224})
    resized = FrontEnd(square)(x)
    assert resized.shape == (3, 1, 224, 224) == (3, *square.shape)
    assert 0 <= resized.amin() and resized.amax() <= 1


def test_imagenet_statistics_make_three_normalised_channels(tmp_path):
    from transformers import ConvNextImageProcessor

    plain = folder_with(tmp_path, "resnet")
    norm = input_statistics("resnet50", ResNetConfig(pretrained=plain), "imagenet")
    assert norm["mean"] == list(IMAGENET_MEAN) == [0.485, 0.456, 0.406]
    assert norm["std"] == list(IMAGENET_STD) == [0.229, 0.224, 0.225]
    image = torch.rand(2, 1, 8, 5)  # (B, 1, F, T) in [0, 1], as the table holds it
    x = (image - stat_tensor(norm["mean"])) / stat_tensor(norm["std"])
    assert x.shape == (2, 3, 8, 5)
    for c in range(3):
        torch.testing.assert_close(x[:, c], (image[:, 0] - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
    own = ConvNextImageProcessor(image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.3, 0.4])
    folder = folder_with(tmp_path, "effnet", own)
    norm = input_statistics("efficientnet_b2", EfficientNetConfig(pretrained=folder), "imagenet")
    assert norm["mean"] == [0.4, 0.5, 0.6] and norm["std"] == [0.2, 0.3, 0.4]
    assert json.loads((tmp_path / "effnet" / "preprocessor_config.json").read_text())["image_std"]


def test_a_pretrained_checkpoint_that_is_missing_says_how_to_get_it(tmp_path):
    from audioclf.hub import PretrainedWeightsError

    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        input_statistics("ast", ASTConfig(pretrained=str(tmp_path / "nowhere/x/y")), "fbank")
