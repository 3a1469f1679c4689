"""openSMILE's functionals as a front-end: shape, finite values, determinism, padding left out, and
the features stage's path (one row per file, in the store). Needs the ``opensmile`` extra (CI
installs it); skipped with the reason where it is missing."""

import importlib.util

import numpy as np
import pytest
import soundfile as sf
import torch

from audioclf.config.features import FeaturesConfig
from audioclf.data.manifest import describe
from audioclf.features import opensmile as smile
from audioclf.features.extract import extract_features
from audioclf.features.frontends import FrontEnd
from audioclf.features.opensmile import LICENCE, MissingExtraError, missing, signal_end
from audioclf.features.store import frontend_key
from audioclf.features.table import FeatureTable

REASON = missing()
needs_extra = pytest.mark.skipif(
    REASON is not None, reason=f"the opensmile extra is not installed: {REASON}"
)
SR = 16000


def voice(seconds: float, seed: int, f0: float = 140.0) -> np.ndarray:
    """A voiced-speech-like signal: a glottal-pulse-ish harmonic series with vibrato, in faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * t))
    return (0.2 * wave + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


def cfg(kind: str, **over) -> FeaturesConfig:
    return FeaturesConfig(kind=kind, sample_rate=SR, **{"segment_seconds": 1.0, **over})


@needs_extra
@pytest.mark.parametrize("kind, dim", [("egemaps", 88), ("compare", 6373)])
def test_functionals_of_a_few_seconds_are_finite_and_deterministic(kind, dim):
    front = FrontEnd(cfg(kind))
    x = torch.from_numpy(np.stack([voice(1.0, 0), voice(1.0, 1, f0=220.0)]))
    out = front(x)
    assert out.shape == (2, 1, dim, 1) == (2, *cfg(kind).shape)
    assert torch.isfinite(out).all()
    assert not torch.equal(out[0], out[1])
    torch.testing.assert_close(front(x), out, rtol=0, atol=0)  # the same input, the same values
    torch.testing.assert_close(front(x[1:]), out[1:], rtol=0, atol=0)  # alone or in a batch


@needs_extra
def test_a_padded_segment_gets_the_functionals_of_its_own_samples():
    front = FrontEnd(cfg("egemaps"))
    half = voice(0.5, 3)
    padded = np.concatenate([half, np.zeros(SR // 2, np.float32)])
    alone = smile.Functionals(cfg("egemaps", segment_seconds=0.5))(torch.from_numpy(half[None]))
    torch.testing.assert_close(front(torch.from_numpy(padded[None]))[:, 0], alone)


def test_signal_end_leaves_out_trailing_zeros_only():
    assert signal_end(np.array([0.0, 1.0, 0.0, 2.0, 0.0, 0.0])) == 4
    assert signal_end(np.zeros(5)) == 5  # all silence: the whole segment


def test_without_the_extra_a_clear_error_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "opensmile" else real(name, *a),
    )
    assert "optional extra 'opensmile'" in missing("egemaps")
    with pytest.raises(MissingExtraError, match=r'pip install -e "\.\[opensmile\]"'):
        FrontEnd(cfg("egemaps"))


def test_the_store_keeps_each_feature_set_apart_and_the_licence_is_stated():
    keys = {frontend_key(cfg(k)) for k in ("egemaps", "compare")}
    assert len(keys) == 2 and all(k.split("-")[0] in ("egemaps", "compare") for k in keys)
    # segment length and pooling shape them; mel settings do not
    assert frontend_key(cfg("egemaps")) == frontend_key(cfg("egemaps", n_mels=64, top_db=60.0))
    assert frontend_key(cfg("egemaps")) != frontend_key(cfg("egemaps", embedding_pool="none"))
    assert "no commercial use" in LICENCE


@needs_extra
def test_the_stage_stores_one_row_per_file(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    entries = []
    for i, seconds in enumerate((0.7, 2.5)):  # shorter than a segment; two and a half segments
        path = audio / f"v{i}.wav"
        sf.write(path, voice(seconds, i), SR)
        entries.append(describe(path, audio, label=f"c{i}", group=f"g{i}"))
    c = cfg("egemaps", workers=1)
    report = extract_features(entries, audio, c, tmp_path / "features", store_dir=tmp_path / "s")
    table = FeatureTable(tmp_path / "features")
    assert report["decoded"] == 2 and table.data.shape == (2, 1, 88, 1)
    assert table.kind == "egemaps" and np.isfinite(table.data).all()
    again = extract_features(entries, audio, c, tmp_path / "again", store_dir=tmp_path / "s")
    assert again["computed"] == 0 and again["reused"] == 2  # from the store: nothing recomputed
    np.testing.assert_array_equal(FeatureTable(tmp_path / "again").data, table.data)
