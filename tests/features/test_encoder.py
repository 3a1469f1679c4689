"""A Hub audio encoder as a front-end (``features.kind: hf``): its hidden states of the chosen
layer (or of every layer), mean-pooled, resolved from the checkpoint's own files, and refused
with a message where the encoder or the layer does not exist."""

import dataclasses

import numpy as np
import pytest
import torch
from tests.models.test_hf import RATE, tiny_wav2vec2

from audioclf.config import parse_params
from audioclf.config.features import FeaturesConfig
from audioclf.config.schema import ParamsError
from audioclf.features import encoder
from audioclf.features.frontends import FrontEnd
from audioclf.features.store import frontend_key
from audioclf.hub import PretrainedWeightsError


@pytest.fixture(scope="module")
def wav2vec2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enc") / "wav2vec2"
    torch.manual_seed(0)
    tiny_wav2vec2(folder)
    return folder


def config(folder, **kw) -> FeaturesConfig:
    return FeaturesConfig(
        kind="hf", encoder=str(folder), sample_rate="auto", segment_seconds=0.5, **kw
    )


def test_resolve_takes_rate_size_and_weights_from_the_encoders_files(wav2vec2):
    cfg, fixed = encoder.resolve(config(wav2vec2, encoder_layer=1))
    assert cfg.sample_rate == RATE and cfg.encoder_dim == 32 and len(cfg.encoder_sha256) == 64
    assert fixed["encoder_dim"] == [None, 32] and fixed["sample_rate"] == ["auto", RATE]
    assert cfg.resolved and cfg.shape == (1, 32, 1)
    other, _ = encoder.resolve(config(wav2vec2, encoder_layer=2))
    assert frontend_key(other) != frontend_key(cfg)  # another layer is another store entry
    # the depth is recorded, but fixed by the weights: an entry made before it keeps its key
    assert cfg.encoder_depth == 2 and fixed["encoder_depth"] == [None, 2]
    assert frontend_key(dataclasses.replace(cfg, encoder_depth=None)) == frontend_key(cfg)


def test_the_embedding_is_the_layers_hidden_states_averaged_over_time(wav2vec2):
    from transformers import AutoFeatureExtractor, Wav2Vec2Model

    cfg, _ = encoder.resolve(config(wav2vec2, encoder_layer=1))
    frontend = FrontEnd(cfg)
    rng = np.random.default_rng(0)
    wave = torch.from_numpy(rng.uniform(-0.5, 0.5, (3, cfg.segment_samples)).astype(np.float32))
    got = frontend(wave)
    assert got.shape == (3, 1, 32, 1) and not frontend.threadsafe

    net = Wav2Vec2Model.from_pretrained(wav2vec2).eval()
    extractor = AutoFeatureExtractor.from_pretrained(wav2vec2)
    inputs = extractor(list(wave.numpy()), sampling_rate=RATE, return_tensors="pt")
    with torch.no_grad():
        states = net(inputs["input_values"], output_hidden_states=True).hidden_states
    torch.testing.assert_close(got[:, 0, :, 0], states[1].mean(dim=1))
    assert not torch.allclose(got[:, 0, :, 0], states[2].mean(dim=1))


def test_every_layer_is_stored_as_the_time_means_of_each_hidden_state(wav2vec2):
    from transformers import AutoFeatureExtractor, Wav2Vec2Model

    cfg, _ = encoder.resolve(config(wav2vec2, encoder_layer="all"))
    assert cfg.shape == (3, 32, 1)  # the input to the first layer and the outputs of both
    one, _ = encoder.resolve(config(wav2vec2, encoder_layer=-1))
    assert frontend_key(cfg) != frontend_key(one)  # a store entry of its own
    frontend = FrontEnd(cfg)
    rng = np.random.default_rng(1)
    wave = torch.from_numpy(rng.uniform(-0.5, 0.5, (2, cfg.segment_samples)).astype(np.float32))
    got = frontend(wave)
    assert got.shape == (2, 3, 32, 1)

    net = Wav2Vec2Model.from_pretrained(wav2vec2).eval()
    extractor = AutoFeatureExtractor.from_pretrained(wav2vec2)
    inputs = extractor(list(wave.numpy()), sampling_rate=RATE, return_tensors="pt")
    with torch.no_grad():
        states = net(inputs["input_values"], output_hidden_states=True).hidden_states
    assert len(states) == 3
    for layer, hidden in enumerate(states):  # (B, T, D) each, averaged over its frames
        torch.testing.assert_close(got[:, layer, :, 0], hidden.mean(dim=1))
    torch.testing.assert_close(got[:, -1], FrontEnd(one)(wave)[:, 0])  # the last is layer -1


def test_a_layer_the_encoder_does_not_have_is_refused_naming_the_range(wav2vec2):
    with pytest.raises(PretrainedWeightsError, match=r"encoder_layer is 5.*2 layers.*\[-3, 2\]"):
        encoder.resolve(config(wav2vec2, encoder_layer=5))


def test_changed_weights_under_the_same_name_are_refused(wav2vec2, tmp_path):
    cfg, _ = encoder.resolve(config(wav2vec2))
    with pytest.raises(PretrainedWeightsError, match="not the 0+ these features were made"):
        FrontEnd(dataclasses.replace(cfg, encoder_sha256="0" * 64))


def test_kind_hf_needs_an_encoder_and_reads_as_a_vector(raw_params):
    raw_params["features"]["kind"] = "hf"
    with pytest.raises(ParamsError, match=r"features\.encoder.*microsoft/wavlm-base-plus"):
        parse_params(raw_params)
    raw_params["features"]["encoder"] = "some/encoder"
    with pytest.raises(ParamsError, match=r"features\.kind.*model=cnn cannot read"):
        parse_params(raw_params)
    raw_params["model"] = "logreg"
    assert parse_params(raw_params).features.kind == "hf"


@pytest.mark.parametrize("layer", ["sum", "6", "ALL", ""])
def test_an_encoder_layer_string_other_than_all_is_refused(raw_params, layer):
    raw_params["model"] = "embedding"
    raw_params["features"].update(kind="hf", encoder="some/encoder", encoder_layer=layer)
    with pytest.raises(ParamsError, match=r"features\.encoder_layer.*integer.*all"):
        parse_params(raw_params)


def test_every_layer_is_for_the_embedding_head_only(raw_params):
    raw_params["features"].update(kind="hf", encoder="some/encoder", encoder_layer="all")
    raw_params["model"] = "embedding"
    assert parse_params(raw_params).features.encoder_layer == "all"
    for model in ("logreg", "svm"):
        raw_params["model"] = model
        with pytest.raises(
            ParamsError,
            match=rf"features\.encoder_layer.*model=embedding.*model={model} takes one layer.*"
            r"features\.encoder_layer=<int>",
        ):
            parse_params(raw_params)


def _whisper(folder):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    tokens = dict(pad_token_id=1, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2)
    config = WhisperConfig(
        d_model=24, encoder_layers=2, encoder_attention_heads=2, decoder_layers=1,
        decoder_attention_heads=2, encoder_ffn_dim=48, decoder_ffn_dim=48, num_mel_bins=16,
        max_source_positions=50, max_target_positions=16, vocab_size=64, **tokens,
    )  # fmt: skip
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=16, chunk_length=1).save_pretrained(folder)


def _ast(folder):
    from tests.models.test_hf import tiny_ast

    tiny_ast(folder)


@pytest.mark.parametrize(("make", "dim"), [(_ast, 32), (_whisper, 24)])
def test_an_ast_and_whispers_encoder_give_one_vector_per_segment(make, dim, tmp_path):
    torch.manual_seed(0)
    make(tmp_path / "enc")
    cfg, _ = encoder.resolve(config(tmp_path / "enc"))
    out = FrontEnd(cfg)(0.1 * torch.randn(2, cfg.segment_samples))
    assert cfg.encoder_dim == dim and out.shape == (2, 1, dim, 1) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # each segment its own
