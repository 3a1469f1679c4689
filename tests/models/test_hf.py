"""``model: hf``: tiny AST, wav2vec 2.0 and Whisper-encoder checkpoints served by the Hub stand-in,
each fine-tuned on two synthetic tones through its own feature extractor, then rebuilt from a
saved checkpoint with no Hub, no cache and downloads off."""

import pytest
import torch
from tests.hub import HubStandIn, save_tiny_ast

from audioclf.config.models import HFConfig
from audioclf.hub import PretrainedWeightsError
from audioclf.models import build_model, head_and_backbone
from audioclf.models.checkpoint import load_checkpoint, save_checkpoint

RATE = 16000
N = RATE // 2  # 0.5-s segments


def tiny_ast(folder):
    save_tiny_ast(
        folder,
        max_length=64,
        num_mel_bins=32,
        num_labels=7,
        extractor={"num_mel_bins": 32, "max_length": 64},
    )


def tiny_wav2vec2(folder):
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=16,
        num_labels=7,
    )
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=RATE).save_pretrained(folder)


def tiny_whisper(folder):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForAudioClassification

    config = WhisperConfig(
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        decoder_layers=1,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_mel_bins=16,
        max_source_positions=50,  # 1-s chunks: 100 frames, halved by the encoder's conv
        max_target_positions=16,
        vocab_size=64,
        classifier_proj_size=16,
        num_labels=7,
    )
    WhisperForAudioClassification(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=16, chunk_length=1).save_pretrained(folder)


CHECKPOINTS = {"ast": tiny_ast, "wav2vec2": tiny_wav2vec2, "whisper": tiny_whisper}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The stand-in Hub serving each tiny checkpoint: (hub, {family: (repo id, commit)})."""
    served = {}
    with HubStandIn() as stand_in:
        for family, save in CHECKPOINTS.items():
            torch.manual_seed(0)
            folder = tmp_path_factory.mktemp(family)
            save(folder)
            served[family] = (f"tiny/{family}", stand_in.add(f"tiny/{family}", folder))
        yield stand_in, served


@pytest.fixture
def online(hub, monkeypatch, tmp_path):
    stand_in, served = hub
    monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return served


def tones(n, seed):
    """(n, 1, 1, N) noisy tones, class 0 at 300 Hz and class 1 at 2 kHz, random phase and level."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    t = torch.arange(N) / RATE
    freq = torch.where(labels == 1, 2000.0, 300.0)[:, None]
    phase = torch.rand(n, 1, generator=g) * 6.28
    level = 0.1 + 0.4 * torch.rand(n, 1, generator=g)
    wave = level * torch.sin(6.2832 * freq * t + phase) + 0.02 * torch.randn(n, N, generator=g)
    return wave[:, None, None], labels


@pytest.mark.parametrize("family", list(CHECKPOINTS))
def test_fine_tunes_and_rebuilds_offline(family, online, monkeypatch, tmp_path):
    name, commit = online[family]
    # the tiny checkpoints' convolutional feature encoders are random: trained, not frozen, here
    cfg = HFConfig(pretrained=name, revision=commit, freeze_feature_encoder=False)
    torch.manual_seed(0)
    model = build_model("hf", cfg, n_classes=2, input_shape=(1, N))
    head, backbone = head_and_backbone(model)
    optimizer = torch.optim.AdamW([{"params": head}, {"params": backbone, "lr": 3e-4}], lr=3e-3)
    x, y = tones(32, seed=1)
    x_test, y_test = tones(16, seed=2)
    losses = []
    model.train()
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        logits = model(x_test)
    accuracy = (logits.argmax(1) == y_test).float().mean().item()
    assert losses[-1] < 0.5 * losses[0] and accuracy >= 0.9, (losses[0], losses[-1], accuracy)

    path = tmp_path / "best.pt"
    save_checkpoint(
        path,
        model=model,
        model_name="hf",
        model_config=cfg,
        labels=["low", "high"],
        norm={"kind": "pretrained", "mean": 0.0, "std": 1.0},
        params={},
        input_shape=(1, N),
    )
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # no Hub at all
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rebuilt, _ = load_checkpoint(path)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x_test), logits)


def test_freezing_leaves_the_first_layers_and_the_feature_encoder_alone(online):
    name, commit = online["wav2vec2"]
    cfg = HFConfig(pretrained=name, revision=commit, freeze_layers=1)
    model = build_model("hf", cfg, n_classes=2, input_shape=(1, N))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(".feature_extractor." in n for n in trainable)
    assert not any(".encoder.layers.0." in n for n in trainable)
    assert any(".encoder.layers.1." in n for n in trainable)
    head, _ = head_and_backbone(model)
    assert {id(p) for p in head} == {
        id(p)
        for n, p in model.named_parameters()
        if n.startswith(("net.classifier.", "net.projector."))
    }
    with pytest.raises(
        PretrainedWeightsError, match="freeze_layers is 5, but 'tiny/wav2vec2' has 2"
    ):
        build_model("hf", HFConfig(name, commit, freeze_layers=5), n_classes=2, input_shape=(1, N))


def test_a_sample_rate_other_than_the_extractors_is_refused(online):
    name, commit = online["whisper"]
    with pytest.raises(PretrainedWeightsError, match="set model_params.hf.sample_rate=16000"):
        build_model(
            "hf", HFConfig(name, commit, sample_rate=22050), n_classes=2, input_shape=(1, N)
        )


def test_params_pair_hf_with_the_waveform_and_nothing_else():
    from tests.conftest import repo_params, shrink

    from audioclf.config import parse_params
    from audioclf.config.schema import ParamsError

    raw = shrink(repo_params())
    params = parse_params({**raw, "model": "hf"})
    assert params.features.kind == "waveform" and params.features.sample_rate == 16000
    assert params.features.shape == (1, 1, params.features.segment_samples)
    with pytest.raises(ParamsError, match="'features.kind' is 'waveform' .*only model=hf reads"):
        parse_params({**raw, "model": "cnn", "features": {**raw["features"], "kind": "waveform"}})
    with pytest.raises(
        ParamsError, match="'features.kind' is 'logmel', which does not fit model=hf"
    ):
        parse_params({**raw, "model": "hf", "features": {**raw["features"], "kind": "logmel"}})
