"""Front-end selection by model, a pretrained front-end's fixed values, and the auto rules."""

import dataclasses

import pytest

from audioclf.config import parse_params
from audioclf.config.features import FeaturesConfig
from audioclf.config.frontends import for_model, resolve_auto
from audioclf.config.schema import ParamsError

# the reference reports' front-end, fixed (params.yaml's defaults are auto: chosen from the data)
REFERENCE = dict(
    features__sample_rate=22050,
    features__n_fft=2048,
    features__hop_length=512,
    features__n_mels=128,
    features__segment_seconds=4.0,
)


def params(raw, **over):
    """params.yaml with dotted overrides, validated."""
    for dotted, value in over.items():
        node, *path = dotted.split("__")
        target = raw
        for part in [node, *path][:-1]:
            target = target[part]
        target[[node, *path][-1]] = value
    return parse_params(raw)


@pytest.mark.parametrize(
    "model, kind",
    [
        ("cnn", "logmel"),
        ("cnn_v2", "logmel"),
        ("vit", "logmel"),
        ("ast", "fbank"),
        ("resnet50", "imagenet"),
        ("efficientnet_b2", "imagenet"),
        ("birdnet", "birdnet"),
        ("logreg", "compare"),
        ("svm", "compare"),
    ],
)
def test_auto_is_the_front_end_the_model_was_pretrained_on(raw_params, model, kind):
    p = params(raw_params, model=model)
    assert raw_params["features"]["kind"] == "auto"
    assert p.features.kind == kind and p.requested_features.kind == "auto"


def test_a_pretrained_front_end_fixes_its_own_values(raw_params):
    ast = params(raw_params, model="ast", **REFERENCE).features
    assert (ast.sample_rate, ast.n_fft, ast.hop_length, ast.n_mels) == (16000, 400, 160, 128)
    assert ast.f_min == 20.0 and ast.segment_seconds == 4.0  # the input length follows the params
    assert ast.shape == (1, 128, 398)  # 1 + (64000 - 400) // 160 frames, not padded to 1024
    birdnet = params(raw_params, model="birdnet").features
    assert (birdnet.sample_rate, birdnet.segment_seconds, birdnet.shape) == (
        48000,
        3.0,
        (1, 1024, 1),
    )


@pytest.mark.parametrize(
    "model, kind, wanted",
    [
        ("ast", "logmel", "fbank"),
        ("ast", "imagenet", "fbank"),
        ("resnet50", "logmel", "imagenet"),
        ("efficientnet_b2", "fbank", "imagenet"),
    ],
)
def test_forcing_another_front_end_on_a_pretrained_model_names_both(
    raw_params, model, kind, wanted
):
    with pytest.raises(ParamsError) as err:
        params(raw_params, model=model, features__kind=kind)
    message = str(err.value)
    assert f"'features.kind' is '{kind}'" in message
    assert f"does not fit model={model} with pretrained weights" in message
    assert f"trained on {wanted}" in message and "set features.kind=auto" in message


def test_from_scratch_any_spectrogram_goes(raw_params):
    p = params(
        raw_params,
        model="ast",
        features__kind="logmel",
        model_params__ast__pretrained=None,
        **REFERENCE,
    )
    assert p.features.kind == "logmel" and p.features.sample_rate == 22050


def test_embeddings_and_spectrogram_models_do_not_mix(raw_params):
    with pytest.raises(ParamsError, match="which model=cnn cannot read"):
        params(copy_of(raw_params), features__kind="birdnet")
    with pytest.raises(ParamsError, match="but model=birdnet reads BirdNET"):
        params(copy_of(raw_params), model="birdnet", features__kind="logmel")
    with pytest.raises(ParamsError, match="but model=birdnet reads BirdNET"):
        params(copy_of(raw_params), model="birdnet", features__kind="compare")


@pytest.mark.parametrize(
    "model, kind",
    [("svm", "logmel"), ("logreg", "mfcc"), ("svm", "fbank"), ("logreg", "imagenet")],
)
def test_a_head_on_a_spectrogram_fails_naming_both(raw_params, model, kind):
    with pytest.raises(ParamsError) as err:
        params(raw_params, model=model, features__kind=kind)
    message = str(err.value)
    assert f"'features.kind' is '{kind}'" in message
    assert f"but model={model} reads one vector per segment" in message


@pytest.mark.parametrize("model", ["cnn", "vit", "cnn_se"])
@pytest.mark.parametrize("kind", ["egemaps", "compare"])
def test_a_network_on_functionals_fails_naming_both(raw_params, model, kind):
    with pytest.raises(ParamsError) as err:
        params(raw_params, model=model, features__kind=kind)
    message = str(err.value)
    assert f"'features.kind' is '{kind}'" in message and f"model={model} cannot read" in message


@pytest.mark.parametrize(
    "model, kind, dim",
    [("svm", "egemaps", 88), ("logreg", "compare", 6373), ("svm", "birdnet", 1024)],
)
def test_heads_take_every_vector_front_end(raw_params, model, kind, dim):
    p = params(raw_params, model=model, features__kind=kind, **REFERENCE)
    assert p.features.kind == kind and p.features.shape == (1, dim, 1)


@pytest.mark.parametrize(
    "aug, ok", [("noise", False), ("gain", False), ("mixup", True), ("specaugment", True)]
)
def test_group_norm_refuses_augmentations_in_db(raw_params, aug, ok):
    over = {"train__norm": "group", f"augment__{aug}__p": 0.5}
    if ok:
        assert params(raw_params, **over).train.norm == "group"
    else:
        with pytest.raises(ParamsError, match="train.norm=group normalises each group"):
            params(raw_params, **over)


def copy_of(raw):
    import copy

    return copy.deepcopy(raw)


@pytest.mark.parametrize(
    "model, aug, ok",
    [
        ("ast", "noise", False),
        ("ast", "gain", False),
        ("ast", "specaugment", True),
        ("ast", "mixup", True),
        ("resnet50", "reverb", False),
        ("birdnet", "pitch_shift", False),
        ("birdnet", "specaugment", False),
        ("birdnet", "mixup", True),
        ("svm", "gain", False),
        ("logreg", "time_stretch", False),
        ("cnn", "noise", True),
    ],
)
def test_augmentations_on_db_log_mel_are_refused_on_other_scales(raw_params, model, aug, ok):
    over = {"model": model, f"augment__{aug}__p": 0.5}
    if ok:
        params(raw_params, **over)
    else:
        with pytest.raises(ParamsError, match=rf"'augment.{aug}.p' is 0.5, but augment.{aug} acts"):
            params(raw_params, **over)


def test_auto_values_are_accepted_and_bad_ones_named(raw_params):
    p = params(copy_of(raw_params), features__sample_rate="auto", features__segment_seconds="auto")
    assert not p.features.resolved
    with pytest.raises(ParamsError, match="still holds auto values"):
        p.features.shape  # noqa: B018 -- no shape before the data chose
    with pytest.raises(ParamsError, match="'features.n_fft' must be positive or auto, got 'fast'"):
        params(copy_of(raw_params), features__n_fft="fast")
    with pytest.raises(ParamsError, match="'features.sample_rate' must be an integer or a string"):
        params(copy_of(raw_params), features__sample_rate=22.5)


def profile(rate, durations):
    durations = sorted(durations)
    q = lambda f: durations[round(f * (len(durations) - 1))]  # noqa: E731
    return {
        "files": len(durations),
        "sample_rate": {"median": rate},
        "duration_s": {"min": q(0), "p10": q(0.1), "p50": q(0.5), "p90": q(0.9), "max": q(1)},
    }


AUTO = FeaturesConfig(
    kind="logmel", sample_rate="auto", n_fft="auto", hop_length="auto", n_mels="auto",
    segment_seconds="auto",
)  # fmt: skip


@pytest.mark.parametrize(
    "rate, durations, expected",
    [
        # the synthetic bird data: the defaults, exactly
        (22050, [4.0] * 10, (22050, 2048, 512, 128, 4.0)),
        # 8-kHz speech of ~0.5-s clips: the hand-fitted front-end (8 kHz, 512, 128, 64 mels, 1 s)
        (8000, [0.3, 0.4, 0.45, 0.5, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9], (8000, 512, 128, 64, 1.0)),
        # EmoDB's 16-kHz originals, 1-9 s
        (16000, [1.2, 2.0, 2.5, 3.0, 3.1, 4.0, 5.3, 8.9], (16000, 1024, 256, 128, 5.5)),
        # ESC-50: 44.1-kHz 5-s clips: resampled to 22.05 kHz, one segment per clip
        (44100, [5.0] * 8, (22050, 2048, 512, 128, 5.0)),
        # Xeno-canto recordings of minutes: segments capped at 10 s
        (48000, [30.0, 60.0, 120.0, 240.0], (22050, 2048, 512, 128, 10.0)),
    ],
)
def test_auto_rules(rate, durations, expected):
    cfg, chosen = resolve_auto(AUTO, profile(rate, durations))
    got = (cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.segment_seconds)
    assert got == expected and cfg.resolved
    assert set(chosen) == {"sample_rate", "n_fft", "hop_length", "n_mels", "segment_seconds"}


def test_auto_keeps_what_params_set_and_a_pretrained_front_end_overrides_auto():
    cfg, chosen = resolve_auto(dataclasses.replace(AUTO, n_mels=40), profile(8000, [0.5] * 5))
    assert cfg.n_mels == 40 and "n_mels" not in chosen
    pretrained = type("Cfg", (), {"pretrained": "x"})()
    fbank = for_model(dataclasses.replace(AUTO, kind="auto"), "ast", pretrained)
    resolved, chosen = resolve_auto(fbank, profile(8000, [0.5] * 5))
    assert (resolved.sample_rate, resolved.n_fft, resolved.n_mels) == (16000, 400, 128)
    assert set(chosen) == {"segment_seconds"} and resolved.segment_seconds == 0.5


def test_auto_without_files_is_refused():
    with pytest.raises(ParamsError, match="auto values but the manifest has no files"):
        resolve_auto(AUTO, {"files": 0})


@pytest.mark.parametrize(
    "rate, seconds, expected",
    [
        (22050, 4.0, (22050, 2048, 512, 128, 4.0)),  # the synthetic set: the reference values
        (22050, 2.0, (22050, 2048, 512, 128, 2.0)),  # the 2-s EmoDB copy: no padded half
        (16000, 2.0, (16000, 1024, 256, 128, 2.0)),  # 16-kHz recordings: no bands above Nyquist
    ],
)
def test_the_default_params_fit_the_data_profile(raw_params, rate, seconds, expected):
    cfg = parse_params(raw_params).features
    assert all(getattr(cfg, key) == "auto" for key in ("sample_rate", "segment_seconds"))
    resolved, _ = resolve_auto(cfg, profile(rate, [seconds] * 10))
    got = tuple(
        getattr(resolved, key)
        for key in ("sample_rate", "n_fft", "hop_length", "n_mels", "segment_seconds")
    )
    assert got == expected


def test_every_ladder_phase_fixes_the_reference_front_end(raw_params):
    from audioclf.experiments.ladder import PHASES, apply_overrides

    for phase in PHASES:
        cfg = parse_params(apply_overrides(raw_params, phase.overrides)).features
        if cfg.kind == "logmel":
            got = (cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.segment_seconds)
            assert got == (22050, 2048, 512, 128, 4.0), phase.name
        if cfg.kind == "hf":  # no auto left; the encoder's size comes from its files
            assert "auto" not in (cfg.sample_rate, cfg.segment_seconds) and not cfg.resolved
        else:
            assert cfg.resolved, phase.name
