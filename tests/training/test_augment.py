"""Augmentations: shapes, label sums, exact behaviour of each spectral transform, reproducibility."""

import dataclasses
import math

import pytest
import torch

from audioclf.config import ParamsError
from audioclf.config.training import (
    AugmentConfig,
    BackgroundConfig,
    GainConfig,
    MixupConfig,
    NoiseConfig,
    PitchShiftConfig,
    ReverbConfig,
    SpecAugmentConfig,
    TimeStretchConfig,
)
from audioclf.training.augment import (
    Augmenter,
    mixup,
    pitch_shift,
    reverb,
    spec_augment,
    time_stretch,
)

MEAN, STD = -40.0, 20.0


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def batch():
    x = torch.randn(4, 1, 16, 24, generator=gen(1))  # normalised log-mel (B, 1, F, T)
    return x, torch.tensor([0, 1, 2, 1])


def only(**parts) -> AugmentConfig:
    return dataclasses.replace(AugmentConfig(), **parts)


def test_all_off_is_identity_and_draws_nothing(batch):
    x, y = batch
    g = gen()
    before = g.get_state()
    out, target = Augmenter(AugmentConfig(), MEAN, STD, 3)(x, y, g)
    assert out is x and target is y and torch.equal(g.get_state(), before)


def test_spec_augment_masks_stripes_within_limits(batch):
    x, _ = batch
    cfg = SpecAugmentConfig(p=1.0, freq_masks=1, freq_width=5, time_masks=1, time_width=7)
    out = spec_augment(x, cfg, torch.ones(4, dtype=torch.bool), gen())
    assert out.shape == x.shape
    zero = out == 0
    for b in range(4):
        rows, cols = zero[b, 0].all(dim=1), zero[b, 0].all(dim=0)  # masked mel bins, masked frames
        assert rows.sum() <= 5 and cols.sum() <= 7
        kept = ~(rows[:, None] | cols[None, :])
        torch.testing.assert_close(out[b, 0][kept], x[b, 0][kept], rtol=0, atol=0)
    assert zero.any()
    untouched = spec_augment(x, cfg, torch.zeros(4, dtype=torch.bool), gen())
    assert torch.equal(untouched, x)


def test_mixup_mixes_inputs_and_labels():
    x = torch.arange(3.0).reshape(3, 1, 1, 1).expand(3, 1, 2, 2)
    soft = torch.nn.functional.one_hot(torch.tensor([0, 1, 2]), 3).float()
    out, target = mixup(x, soft, 0.7, torch.tensor([2, 0, 1]))
    torch.testing.assert_close(out[0], torch.full((1, 2, 2), 0.7 * 0 + 0.3 * 2))
    torch.testing.assert_close(target[0], torch.tensor([0.7, 0.0, 0.3]))
    torch.testing.assert_close(target.sum(dim=1), torch.ones(3))


def test_mixup_in_augmenter_gives_soft_labels_summing_to_one(batch):
    x, y = batch
    out, target = Augmenter(only(mixup=MixupConfig(p=1.0, alpha=0.4)), MEAN, STD, 3)(x, y, gen())
    assert out.shape == x.shape and target.shape == (4, 3)
    torch.testing.assert_close(target.sum(dim=1), torch.ones(4))
    assert (target >= 0).all() and (target.max(dim=1).values >= 0.5).all()


def test_gain_is_a_constant_db_offset_per_clip(batch):
    x, y = batch
    out, target = Augmenter(only(gain=GainConfig(p=1.0, max_db=6.0)), MEAN, STD, 3)(x, y, gen())
    offset_db = (out - x) * STD  # (B, 1, F, T)
    per_clip = offset_db.flatten(1)
    torch.testing.assert_close(per_clip, per_clip[:, :1].expand_as(per_clip), rtol=0, atol=1e-4)
    assert (per_clip.abs() <= 6.0 + 1e-4).all() and per_clip.abs().max() > 0 and target is y


def test_pitch_shift_moves_mel_bins_and_fills_the_floor():
    db = torch.arange(6.0).reshape(1, 1, 6, 1).expand(2, 1, 6, 3)
    out = pitch_shift(db, torch.tensor([2, -1]))
    assert out[0, 0, :, 0].tolist() == [0, 0, 0, 1, 2, 3]  # up 2: vacated bins = floor (0)
    assert out[1, 0, :, 0].tolist() == [1, 2, 3, 4, 5, 0]


def test_time_stretch_rate_one_is_identity_and_two_halves(batch):
    db = torch.arange(8.0).reshape(1, 1, 1, 8).expand(2, 1, 2, 8)
    out = time_stretch(db, torch.tensor([1.0, 2.0]), torch.zeros(2))
    torch.testing.assert_close(out[0], db[0])
    assert out[1, 0, 0].tolist() == [0, 2, 4, 6, 0, 0, 0, 0]  # faster: padded with the floor
    slow = time_stretch(db[:1], torch.tensor([0.5]), torch.tensor([2.0]))
    assert slow[0, 0, 0].tolist() == [
        1,
        1.5,
        2,
        2.5,
        3,
        3.5,
        4,
        4.5,
    ]  # slower: cropped from frame 2


def test_reverb_adds_a_decaying_tail_of_the_given_energy():
    power = torch.zeros(1, 1, 1, 40)
    power[..., 0] = 1.0  # an impulse
    out = reverb(power, torch.tensor([3.0]), torch.tensor([0.5]))[0, 0, 0]
    assert out[0] == 1.0
    assert out[1:].sum().item() == pytest.approx(0.5, rel=1e-5)
    assert (out[2] / out[1]).item() == pytest.approx(math.exp(-1 / 3), rel=1e-5)
    torch.testing.assert_close(reverb(power, torch.tensor([3.0]), torch.tensor([0.0])), power)


def test_background_and_noise_are_added_at_the_snr(batch):
    x, y = batch
    power = lambda t: torch.pow(10.0, (t * STD + MEAN) / 10)  # noqa: E731
    for part in (
        {"background": BackgroundConfig(p=1.0, snr_db=(10.0, 10.0))},
        {"noise": NoiseConfig(p=1.0, snr_db=(10.0, 10.0))},
    ):
        out, _ = Augmenter(only(**part), MEAN, STD, 3)(x, y, gen())
        added = (power(out) - power(x)).mean(dim=(1, 2, 3))
        ratio = added / power(x).mean(dim=(1, 2, 3))
        tol = (
            1e-3 if "background" in part else 0.15
        )  # exponential noise: a sample mean over 384 bins
        torch.testing.assert_close(ratio, torch.full((4,), 0.1), rtol=tol, atol=0)


def test_everything_on_is_finite_shaped_and_reproducible(batch):
    x, y = batch
    cfg = AugmentConfig(
        specaugment=SpecAugmentConfig(p=0.5),
        mixup=MixupConfig(p=0.5),
        noise=NoiseConfig(p=0.5),
        gain=GainConfig(p=0.5),
        pitch_shift=PitchShiftConfig(p=0.5),
        time_stretch=TimeStretchConfig(p=0.5),
        reverb=ReverbConfig(p=0.5),
        background=BackgroundConfig(p=0.5),
    )
    aug = Augmenter(cfg, MEAN, STD, 3)
    a, ta = aug(x, y, gen(5))
    b, tb = aug(x, y, gen(5))
    c, _ = aug(x, y, gen(6))
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert torch.equal(a, b) and torch.equal(ta, tb) and not torch.equal(a, c)


def test_bad_augment_params_are_named():
    with pytest.raises(
        ParamsError, match=r"'augment.mixup.p' must be a probability in \[0, 1\], got 1.5"
    ):
        MixupConfig(p=1.5)
    with pytest.raises(ParamsError, match="'augment.noise.snr_db' must be \\[low, high\\]"):
        NoiseConfig(snr_db=(20.0, 10.0))
