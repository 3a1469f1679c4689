"""Params of the real datasets: defaults load, bad values fail naming key and fix,
and the download stage writes the common manifest for any adapter."""

import copy
import csv
import importlib
import importlib.util
from pathlib import Path

import pytest
import yaml

from audioclf.config import ParamsError, parse_params
from audioclf.config.data import DataConfig
from audioclf.config.schema import build
from audioclf.data.datasets import DATASETS

REPO = Path(__file__).resolve().parents[3]


def raw_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_every_dataset_is_registered_and_params_yaml_is_valid():
    assert set(DATASETS) == {"synthetic", "esc50", "emodb", "xenocanto", "folder"}
    for name in DATASETS:
        params = parse_params({**raw_params(), "dataset": name})
        assert params.dataset == name
    assert (
        build(DataConfig, raw_params()["data"], "data") == DataConfig()
    )  # yaml mirrors the defaults


@pytest.mark.parametrize(
    "data, key, says",
    [
        ({"esc50": {"sha256": "abc"}}, "data.esc50.sha256", "64-character hex"),
        ({"emodb": {"url": "ftp://x/y.zip"}}, "data.emodb.url", "http(s) URL"),
        (
            {"esc50": {"folds": [1]}},
            "data.esc50.folds",
            "allowed keys under 'data.esc50': url, sha256, esc10",
        ),
        ({"xenocanto": {"query": "cnt:Peru"}}, "data.xenocanto", "set species: [] to use query"),
        ({"xenocanto": {"species": []}}, "data.xenocanto", "needs exactly one of"),
        ({"xenocanto": {"species": ["Parus"]}}, "data.xenocanto.species[0]", "'Genus species'"),
        (
            {"xenocanto": {"species": [], "query": "cnt:Peru q:B"}},
            "data.xenocanto.quality",
            "own q: tag",
        ),
        (
            {"xenocanto": {"quality": "Z"}},
            "data.xenocanto.quality",
            "allowed values: null, A, B, C, D, E",
        ),
        ({"xenocanto": {"per_page": 10}}, "data.xenocanto.per_page", "[50, 500]"),
        ({"xenocanto": {"max_per_species": 0}}, "data.xenocanto.max_per_species", ">= 1"),
        (
            {"folder": {"label_regex": "^(\\d+"}},
            "data.folder.label_regex",
            "not a valid regular expression",
        ),
        ({"folder": {"group_regex": "^(\\d+)_"}}, "data.folder.group_regex", "(?P<group>...)"),
        ({"folder": {"label_column": "y"}}, "data.folder.label_column", "set data.folder.csv"),
        ({"folder": {"extensions": ["wav"]}}, "data.folder.extensions[0]", "'.wav'"),
        ({"retries": -1}, "data.retries", ">= 0"),
        ({"timeout_s": 0}, "data.timeout_s", "positive"),
        ({"download_dir": 3}, "data.download_dir", "must be a string"),
    ],
)
def test_bad_dataset_params_name_the_key(data, key, says):
    raw = raw_params()
    raw["data"] = {
        **raw["data"],
        **{
            k: {**raw["data"].get(k, {}), **v} if isinstance(v, dict) else v
            for k, v in data.items()
        },
    }
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert f"'{key}'" in str(err.value) and says in str(err.value)


def _stage():
    spec = importlib.util.spec_from_file_location("download_stage", REPO / "stages" / "download.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_download_stage_writes_the_manifest(audio, tmp_path):
    root = audio.tree(
        tmp_path / "mine",
        {"dog/a_1.wav": audio.wav(), "cat/b_1.wav": audio.wav(), "cat/b_2.wav": audio.wav()},
    )
    raw = copy.deepcopy(raw_params())
    raw["dataset"] = "folder"
    raw["data"].update(archive=str(root), download_dir=str(tmp_path / "dl"))
    raw["data"]["folder"]["group_regex"] = r"^(?P<group>[a-z])_"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))

    manifest = _stage().main(
        ["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw")]
        + ["--profile", str(tmp_path / "profile.json")]
    )
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["path"], r["label"], r["group"]) for r in rows] == [
        ("audio/cat/b_1.wav", "cat", "b"),
        ("audio/cat/b_2.wav", "cat", "b"),
        ("audio/dog/a_1.wav", "dog", "a"),
    ]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [
        "audio",
        "manifest.csv",
        "source.json",
        "unreadable.json",
    ]


@pytest.mark.parametrize("module", ["fetch", "emodb", "xenocanto"])
def test_docstring_examples(module):
    import doctest

    mod = importlib.import_module(f"audioclf.data.datasets.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
