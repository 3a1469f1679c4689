"""Values that used to slip past validation, an audit refusal that says how to go on, its choices,
and a local archive whose change reruns the download."""

import copy

import numpy as np
import pytest
import soundfile as sf
from tests.conftest import repo_params

from audioclf.config import ParamsError, parse_params
from audioclf.data.audit import audit_folds, conclude
from audioclf.data.datasets.archive import fingerprint_source
from audioclf.data.duplicates import merge_duplicate_groups
from audioclf.data.manifest import describe
from audioclf.data.split import LeakageError, make_folds

NON_FINITE = [
    ("train", "lr"),
    ("train", "grad_clip"),
    ("train", "ema"),
    ("features", "top_db"),
    ("data", "timeout_s"),
    ("features", "segment_seconds"),
    ("features", "max_file_seconds"),
    ("audit", "max_file_seconds"),
]


@pytest.mark.parametrize("section, key", NON_FINITE)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_fail_validation_naming_the_key(section, key, value):
    raw = copy.deepcopy(repo_params())
    raw[section][key] = value
    with pytest.raises(ParamsError, match=f"'{section}.{key}' must be a finite number"):
        parse_params(raw)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_seeds_outside_what_numpy_and_torch_take_fail_validation(seed):
    raw = {**repo_params(), "seed": seed}
    with pytest.raises(ParamsError, match="'seed' must be in \\[0, 2\\*\\*32 - 1\\]"):
        parse_params(raw)


@pytest.mark.parametrize("decay", [-0.1, 1.0, 2])
def test_a_weight_average_decay_outside_0_1_fails_validation(decay):
    raw = copy.deepcopy(repo_params())
    raw["train"]["ema"] = decay
    with pytest.raises(ParamsError, match=r"'train.ema' must be in \[0, 1\) \(0: off\)"):
        parse_params(raw)


@pytest.fixture
def copies(tmp_path):
    """Six recordings in six groups; c1 is published twice, as c1 and c4 (another group, other name)."""
    rng = np.random.default_rng(3)
    waves = {f"c{i}": 0.2 * rng.standard_normal(16000).astype(np.float32) for i in range(6)}
    waves["c4"] = waves["c1"] * 0.7  # the same recording, quieter
    entries = []
    for name, wave in waves.items():
        sf.write(tmp_path / f"{name}.wav", wave, 16000)
        entries.append(
            describe(tmp_path / f"{name}.wav", tmp_path, label=f"l{int(name[1]) % 2}", group=name)
        )
    return tmp_path, {e.path: e for e in entries}


def _fold(entries, train, test):
    return {
        "train": [entries[f"{n}.wav"] for n in train],
        "val": [],
        "test": [entries[f"{n}.wav"] for n in test],
    }


def test_a_refusal_names_the_pairs_and_every_way_on(copies):
    root, entries = copies
    report = audit_folds([_fold(entries, ["c0", "c1", "c2"], ["c3", "c4", "c5"])], root)
    with pytest.raises(LeakageError) as err:
        conclude(report, "reports/leakage.json")
    text = str(err.value)
    assert "c1.wav (train) ~ c4.wav (test)" in text
    for way in ("= warn", "= exclude", "split.merge_duplicates=true", "remove the copies"):
        assert way in text


def test_warn_keeps_going_and_exclude_lists_the_test_side_to_score_without(copies):
    root, entries = copies
    folds = [_fold(entries, ["c0", "c1", "c2"], ["c3", "c4", "c5"])]
    warned = audit_folds(folds, root, near_level="warn")
    assert warned["ok"] and warned["checks"]["near"]["count"] == 1 and warned["exclude"] == {}
    excluded = audit_folds(folds, root, near_level="exclude")
    assert excluded["ok"] and excluded["exclude"] == {"0": ["c4.wav"]}


def test_merging_duplicate_groups_puts_copies_on_one_side(copies):
    root, entries = copies
    merged, sets = merge_duplicate_groups(list(entries.values()), root, max_ber=0.2, max_seconds=60)
    assert sets == [["c1", "c4"]]
    groups = {e.path: e.group for e in merged}
    assert groups["c1.wav"] == groups["c4.wav"] == "c1"
    for seed in range(5):
        (fold,) = make_folds(
            merged,
            strategy="holdout",
            seed=seed,
            fractions={"train": 0.5, "val": 0.17, "test": 0.33},
        )
        side = {e.path: s for s, rows in fold.items() for e in rows}
        assert side["c1.wav"] == side["c4.wav"]
        assert audit_folds([fold], root)["ok"]


def test_merge_is_refused_for_a_datasets_official_folds():
    raw = repo_params()
    raw["split"] = {**raw["split"], "strategy": "official", "merge_duplicates": True}
    with pytest.raises(ParamsError, match="'split.merge_duplicates' cannot merge groups across"):
        parse_params(raw)


def test_a_local_archive_change_changes_its_fingerprint(tmp_path):
    root = tmp_path / "ds"
    (root / "birds").mkdir(parents=True)
    (root / "birds" / "a.wav").write_bytes(b"one")
    first = fingerprint_source(root)
    assert fingerprint_source(root) == first and first["files"] == 1
    (root / "birds" / "b.wav").write_bytes(b"two")
    second = fingerprint_source(root)
    (root / "birds" / "a.wav").write_bytes(b"other content")
    third = fingerprint_source(root)
    assert len({first["digest"], second["digest"], third["digest"]}) == 3
    import zipfile

    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("a.wav", b"x")
    digest = fingerprint_source(tmp_path / "a.zip")["digest"]
    with zipfile.ZipFile(tmp_path / "a.zip", "a") as zf:
        zf.writestr("b.wav", b"y")
    assert fingerprint_source(tmp_path / "a.zip")["digest"] != digest
    assert fingerprint_source(tmp_path / "nowhere") == {
        "kind": "missing",
        "digest": None,
        "files": 0,
    }


def test_download_reasons_name_no_temporary_folder(tmp_path, make_data, audio):
    from audioclf.data.datasets import DATASETS
    from audioclf.io import atomic_path

    root = audio.tree(
        tmp_path / "ds",
        {"birds/a.wav": audio.wav(), "birds/bad.wav": b"RIFF junk", "frogs/b.wav": audio.wav()},
    )
    with atomic_path(tmp_path / "raw") as tmp:
        tmp.mkdir()
        DATASETS["folder"](make_data(archive=str(root)), 0, tmp)
    text = (tmp_path / "raw" / "unreadable.json").read_text()
    assert "bad.wav" in text and ".tmp-" not in text and str(tmp_path) not in text


def test_exclude_scores_each_test_fold_as_given_and_without_its_flagged_files(
    tiny_params, tiny_cache, tmp_path
):
    import dataclasses as dc

    from audioclf.evaluation.evaluate import evaluate_folds
    from audioclf.features.table import FeatureTable
    from audioclf.training.loop import train

    cache, split = tiny_cache
    table = FeatureTable(cache)
    spec = tiny_params.train_spec()
    spec = dc.replace(spec, train=dc.replace(spec.train, epochs=1))
    cfg = dc.replace(tiny_params.evaluate, bootstrap=20)  # the CI's width is not what is checked
    paths = {name: [e.path for e in rows] for name, rows in split.items()}
    train(spec, table, paths["train"], paths["val"], tmp_path / "best.pt", lambda m, s: None)
    counts = {lab: 1.0 for lab in table.labels}
    flagged = paths["test"][:3]
    out = evaluate_folds(
        [tmp_path / "best.pt"],
        table,
        [paths["test"]],
        cfg=cfg,
        seed=0,
        train_counts=counts,
        exclude={"0": flagged},
    )
    kept = evaluate_folds(
        [tmp_path / "best.pt"],
        table,
        [paths["test"][3:]],
        cfg=cfg,
        seed=0,
        train_counts=counts,
    )
    summary = out["summary"]
    assert summary["flagged_test_files"] == 3 and summary["n"] == len(paths["test"])
    # the interval resamples the test files' recordings (the synthetic data: 2-3 clips each)
    assert summary["n_groups"] == len({e.group for e in split["test"]}) < summary["n"]
    assert summary["test_without_flagged"] == kept["summary"]["test"]
    assert "test_without_flagged" not in kept["summary"]
