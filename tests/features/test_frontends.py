"""Front-ends against librosa references, batched against item by item."""

import dataclasses

import librosa
import numpy as np
import pytest
import torch

from audioclf.config.features import FeaturesConfig
from audioclf.features.frontends import (
    MFCC,
    FrontEnd,
    LogMel,
    delta_matrix,
    highpass_gain,
    mel_filterbank,
)

CFG = FeaturesConfig(
    kind="logmel", sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128, segment_seconds=1.0
)
# float32 torch STFT against librosa's: rounding only, far below a hundredth of a dB
DB_ATOL = 2e-3


def chirp(seconds=1.0, sr=22050, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (
        0.5 * np.sin(2 * np.pi * (500 + 3000 * t) * t) + 0.05 * rng.standard_normal(len(t))
    ).astype(np.float32)


def librosa_logmel(wave, cfg, power=None):
    if power is None:
        power = np.abs(librosa.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length)) ** 2
    mel = librosa.feature.melspectrogram(
        S=power,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
    )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=cfg.top_db)


@pytest.mark.parametrize(
    "f_min, f_max, n_mels, n_fft",
    [
        (0.0, None, 128, 2048),
        (500.0, 8000.0, 128, 2048),
        (0.0, None, 40, 2048),
        (0.0, None, 40, 1001),
    ],
)
def test_logmel_matches_librosa(f_min, f_max, n_mels, n_fft):
    """Odd FFT lengths too: the CPU kernel windows in the frequency domain, where odd and even differ."""
    cfg = dataclasses.replace(CFG, f_min=f_min, f_max=f_max, n_mels=n_mels, n_fft=n_fft)
    wave = chirp()
    ours = LogMel(cfg)(torch.from_numpy(wave)[None])[0].numpy()
    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=n_mels,
        fmin=f_min,
        fmax=f_max,
    )
    ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=cfg.top_db)
    assert ours.shape == ref.shape == (n_mels, cfg.n_frames)
    np.testing.assert_allclose(ours, ref, atol=DB_ATOL, rtol=0)


@pytest.mark.parametrize(
    "top_db, silence", [(80.0, "leading"), (30.0, "leading"), (80.0, "trailing"), (80.0, "padding")]
)
def test_top_db_floor_and_silence_match_librosa(top_db, silence):
    """Digital silence: its frames sit on the floor, peak - top_db (per item). Trailing zeros
    (and a clip zero-padded to its segment) take the path that skips their frames."""
    cfg = dataclasses.replace(CFG, top_db=top_db)
    loud, quiet = chirp(), 1e-3 * chirp(seed=1)
    cut = {
        "leading": slice(None, len(loud) // 2),
        "trailing": slice(len(loud) // 2, None),
        "padding": slice(len(loud) // 5, None),
    }[silence]
    loud[cut] = 0.0
    waves = np.stack([loud, quiet])
    logmel = LogMel(cfg)
    batch = logmel(torch.from_numpy(waves)).numpy()
    alone = [
        logmel(torch.from_numpy(wave)[None])[0].numpy() for wave in waves
    ]  # a batch skips no frame here
    refs = [librosa_logmel(wave, cfg) for wave in waves]
    assert (
        refs[0] == refs[0].max() - top_db
    ).mean() > 0.1  # the floor is reached, not only in theory
    for ours in (batch, alone):
        for item, ref in zip(ours, refs, strict=True):
            np.testing.assert_allclose(item, ref, atol=DB_ATOL, rtol=0)


def test_highpass_is_the_butterworth_gain_on_the_power_spectrum():
    cfg = dataclasses.replace(CFG, f_min=500.0, highpass_order=4)
    t = np.arange(cfg.segment_samples) / cfg.sample_rate
    wave = (np.sin(2 * np.pi * 550 * t) + 0.1 * chirp()).astype(np.float32)
    ours = LogMel(cfg)(torch.from_numpy(wave)[None])[0].numpy()
    freqs = librosa.fft_frequencies(sr=cfg.sample_rate, n_fft=cfg.n_fft)
    power = np.abs(librosa.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length)) ** 2
    ref = librosa_logmel(wave, cfg, power * highpass_gain(freqs, 500.0, 4)[:, None])
    np.testing.assert_allclose(ours, ref, atol=DB_ATOL, rtol=0)
    # just above the cut-off the lowest band loses energy; far above, nothing changes
    plain = LogMel(dataclasses.replace(cfg, highpass_order=0))(torch.from_numpy(wave)[None])[
        0
    ].numpy()
    assert (plain - ours)[0].mean() > 1.0
    np.testing.assert_allclose(ours[-20:], plain[-20:], atol=1e-2)


def test_highpass_gain_is_half_power_at_cutoff():
    assert highpass_gain(np.array([1000.0]), 1000.0, 3)[0] == pytest.approx(0.5)
    assert (np.diff(highpass_gain(np.linspace(0, 5000, 50), 1000.0, 2)) >= 0).all()
    assert mel_filterbank(dataclasses.replace(CFG, f_min=300.0, highpass_order=2)).shape == (
        128,
        1025,
    )


def test_mfcc_and_deltas_match_librosa():
    cfg = dataclasses.replace(CFG, kind="mfcc", n_mfcc=20, delta_width=9)
    wave = chirp(seed=3)
    ours = MFCC(cfg)(torch.from_numpy(wave)[None])[0].numpy()
    mfcc = librosa.feature.mfcc(
        y=wave,
        sr=cfg.sample_rate,
        n_mfcc=20,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
    )  # librosa's power_to_db default top_db=80 == cfg.top_db
    ref = np.stack(
        [
            mfcc,
            librosa.feature.delta(mfcc, width=9, order=1),
            librosa.feature.delta(mfcc, width=9, order=2),
        ]
    )
    assert ours.shape == ref.shape == (3, 20, cfg.n_frames)
    # coefficients are sums of 128 dB values (up to a few hundred): 1e-2 absolute is float32 rounding
    np.testing.assert_allclose(ours, ref, atol=1e-2, rtol=0)


def test_delta_matrix_reproduces_librosa_delta_at_the_edges():
    x = np.random.default_rng(0).standard_normal((4, 30))
    for order in (1, 2):
        np.testing.assert_allclose(
            x @ delta_matrix(30, 7, order).T,
            librosa.feature.delta(x, width=7, order=order),
            atol=1e-10,
        )


@pytest.mark.parametrize(
    "f_min, f_max, highpass_order, n_fft",
    [(0.0, None, 0, 2048), (500.0, 8000.0, 4, 2048), (0.0, None, 0, 1001)],
)
def test_frames_in_trailing_zeros_are_skipped_without_changing_the_features(
    f_min, f_max, highpass_order, n_fft
):
    """The front-end transforms only frames that see signal; transforming every frame gives the same features."""
    cfg = dataclasses.replace(
        CFG, f_min=f_min, f_max=f_max, highpass_order=highpass_order, n_fft=n_fft
    )
    logmel = LogMel(cfg)
    waves = np.stack([chirp(seed=s) for s in range(2)])
    waves[:, len(waves[0]) // 3 :] = 0.0  # a short clip padded to its segment, twice
    waves = torch.from_numpy(waves)
    frames = torch.nn.functional.pad(waves, (n_fft // 2, n_fft // 2)).unfold(
        -1, n_fft, cfg.hop_length
    )
    # every frame, padding included, through the dense filterbank
    power = torch.fft.rfft(frames * logmel.window).abs().square()  # (2, T, F)
    every = power @ torch.from_numpy(mel_filterbank(cfg)).T  # (2, T, n_mels)
    db = torch.log10(every.clamp_min(1e-10)) * 10
    db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - cfg.top_db).transpose(1, 2)
    torch.testing.assert_close(logmel(waves), db, rtol=1e-6, atol=1e-5)
    silent = logmel(torch.zeros(1, cfg.segment_samples))
    assert torch.equal(silent, torch.full_like(silent, -100.0))  # 10 log10(amin)


@pytest.mark.parametrize("tile", [1, 7, 96, 10_000])
def test_any_tiling_of_the_frames_gives_the_same_features(tile, monkeypatch):
    """Tiles that end past the last frame, or past the signal of a padded clip, change nothing."""
    import audioclf.features.frontends as frontends

    logmel = LogMel(CFG)
    waves = torch.from_numpy(np.stack([chirp(seed=s) for s in range(3)]))
    waves[1, len(waves[1]) // 2 :] = 0.0
    reference = logmel(waves)
    monkeypatch.setattr(frontends, "CPU_TILE_FRAMES", tile)
    torch.testing.assert_close(logmel(waves), reference, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_batch_equals_items(kind):
    frontend = FrontEnd(dataclasses.replace(CFG, kind=kind))
    waves = torch.from_numpy(np.stack([chirp(seed=s) * (s + 1) / 3 for s in range(3)]))
    batch = frontend(waves)
    assert batch.shape == (3, *frontend.shape)
    for i in range(3):
        torch.testing.assert_close(batch[i], frontend(waves[i : i + 1])[0], atol=1e-3, rtol=0)


def test_frontend_shapes_carry_a_channel_axis():
    assert FrontEnd(CFG).shape == (1, 128, CFG.n_frames)
    assert FrontEnd(dataclasses.replace(CFG, kind="mfcc", n_mfcc=13)).shape == (3, 13, CFG.n_frames)


def test_the_logmel_comes_out_contiguous_so_storing_it_copies_nothing():
    waves = torch.from_numpy(np.stack([chirp(seed=s) for s in range(3)]))
    waves[2, len(waves[2]) // 3 :] = 0.0  # whole tiles past its signal, and frames cut off the last
    assert FrontEnd(CFG)(waves).is_contiguous()


def test_mfcc_rejects_another_segment_length():
    mfcc = MFCC(dataclasses.replace(CFG, kind="mfcc"))
    with pytest.raises(ValueError, match="built for 44 frames per segment, got 87"):
        mfcc(torch.zeros(1, 2 * CFG.segment_samples))


@pytest.mark.gpu
def test_cuda_equals_cpu():
    cfg = dataclasses.replace(CFG, kind="mfcc")
    waves = torch.from_numpy(np.stack([chirp(seed=s) for s in range(4)]))
    cpu = FrontEnd(cfg)(waves)
    gpu = FrontEnd(cfg).cuda()(waves.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-2, rtol=0)
