"""The leakage audit catches planted duplicates (exact, re-encoded, gain-changed, resampled,
trimmed) across splits and passes clean data."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from audioclf.data.audit import audit_folds, describe_violations
from audioclf.data.fingerprint import bit_error_rate, fingerprint, near_duplicates
from audioclf.data.manifest import describe
from audioclf.data.split import grouped_split


@pytest.fixture(scope="module")
def whole(tiny_dataset):
    """The tiny dataset's folder and a grouped split of all its clips."""
    root, entries = tiny_dataset
    return root, grouped_split(entries, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)


@pytest.fixture(scope="module")
def few(whole):
    """The first few clips of each split (neighbouring clips of one recording among them): every
    audit fingerprints all its files, and a planted copy needs only a few others around it."""
    root, full = whole
    return root, {name: rows[:5] for name, rows in full.items()}


def test_clean_split_passes(whole):
    root, split = whole
    report = audit_folds([split], root)
    assert report["ok"] and all(c["count"] == 0 for c in report["checks"].values())
    assert (
        report["near_pairs_found"] == 0
    )  # no false positives among distinct clips, same recordings included


def _plant(root, source, name, transform, sr_out=None):
    audio, sr = sf.read(root / source.path, dtype="float32")
    audio = transform(audio, sr)
    path = root / "planted" / name
    path.parent.mkdir(exist_ok=True)
    subtype = {".wav": "PCM_16", ".mp3": "MPEG_LAYER_III"}.get(path.suffix)
    sf.write(path, audio, sr_out or sr, subtype=subtype)
    return describe(path, root, label=source.label, group=f"planted-{name}")


@pytest.mark.parametrize(
    "name, transform, sr_out, check",
    [
        ("copy.flac", lambda a, sr: a, None, "exact"),
        ("quiet.wav", lambda a, sr: a * 0.25, None, "near"),
        (
            "resampled.wav",
            lambda a, sr: AF.resample(torch.from_numpy(a), sr, 11025).numpy(),
            11025,
            "near",
        ),
        ("trimmed.wav", lambda a, sr: a[int(0.3 * sr) :], None, "near"),
        ("reencoded.mp3", lambda a, sr: a, None, "near"),
    ],
)
def test_planted_duplicate_in_test_is_caught(few, name, transform, sr_out, check):
    root, split = few
    source = split["train"][3]
    planted = _plant(root, source, name, transform, sr_out)
    fold = {**split, "test": split["test"] + [planted]}
    report = audit_folds([fold], root)
    assert not report["ok"]
    assert report["checks"][check]["count"] == 1
    hit = report["checks"][check]["violations"][0]
    assert {hit["a"], hit["b"]} == {source.path, planted.path}
    assert planted.path in describe_violations(report) and source.path in describe_violations(
        report
    )


def test_warn_level_and_leaky_do_not_fail(few):
    root, split = few
    planted = _plant(root, split["train"][0], "warned.wav", lambda a, sr: a * 0.5)
    fold = {**split, "test": split["test"] + [planted]}
    report = audit_folds([fold], root, near_level="warn")
    assert (
        report["ok"]
        and report["checks"]["near"]["count"] == 1
        and report["checks"]["near"]["level"] == "warn"
    )
    crossing = {
        **split,
        "test": split["test"] + [split["train"][1]],
    }  # same clip (so same group) on both sides
    assert not audit_folds([crossing], root)["ok"]
    leaky = audit_folds([crossing], root, leaky=True)
    assert (
        leaky["ok"]
        and leaky["checks"]["groups"]["count"] == 1
        and leaky["checks"]["exact"]["level"] == "warn"
    )


def test_pretrained_ids_in_test(few):
    root, split = few
    split = {"test": split["test"]}  # the check reads the test side only
    victim = split["test"][0]
    report = audit_folds([split], root, pretrained_ids=frozenset({victim.group}))
    expected = [
        {"fold": 0, "path": e.path} for e in split["test"] if e.group == victim.group
    ]  # a recording id
    assert (
        len(expected) >= 2
        and not report["ok"]
        and report["checks"]["pretrained"]["violations"] == expected
    )
    by_stem = audit_folds(
        [split], root, pretrained_ids=frozenset({victim.path.rsplit("/", 1)[1][:-4]})
    )
    assert by_stem["checks"]["pretrained"]["violations"] == [{"fold": 0, "path": victim.path}]


def test_fingerprint_properties():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(22050 * 2).astype(np.float32)
    b = rng.standard_normal(22050 * 2).astype(np.float32)
    fa, fb = fingerprint(a, 22050), fingerprint(b, 22050)
    assert fa.dtype == np.uint32 and len(fa) > 100
    assert bit_error_rate(fa, fa, 0) == (0.0, len(fa))
    assert 0.4 < bit_error_rate(fa, fb, 0)[0] < 0.6  # unrelated audio: about half the bits differ
    assert near_duplicates({"a": fa, "b": fb}) == []
    assert len(fingerprint(a[:100], 22050)) == 0


def test_file_absent_from_a_fold_is_not_a_violation_there(few):
    """Pairs are found once over all files; a fold judges only the pairs it holds both of."""
    root, split = few
    planted = _plant(root, split["train"][2], "only_in_fold0.wav", lambda a, sr: a * 0.5)
    fold0 = {**split, "test": split["test"] + [planted]}
    report = audit_folds([fold0, split], root)
    assert (
        report["checks"]["near"]["count"] == 1
        and report["checks"]["near"]["violations"][0]["fold"] == 0
    )
