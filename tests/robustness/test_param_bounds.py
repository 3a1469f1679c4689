"""Values that used to pass validation and then run away (minutes of work, gigabytes, a raw
allocation error): each now stops when params are loaded, naming its key and its bound."""

import copy
import re

import pytest

from audioclf.config import ParamsError, parse_params, schema

RUNAWAY = {
    "features.segment_hop_seconds": (1e-5, "features.segment_hop_seconds"),
    "evaluate.bootstrap": (10**9, "evaluate.bootstrap"),
    "data.synthetic.n_classes": (10**6, "data.synthetic.n_classes"),
    "data.synthetic.max_clips_per_class": (10**7, "data.synthetic.max_clips_per_class"),
    "model_params.cnn.channels": ([10**6, 64, 128, 192], "model_params.*.channels[0]"),
    "model_params.cnn_v2.channels": ([4096] * 8, "model_params.*.channels"),
    "model_params.cnn.hidden": (10**9, "model_params.*.hidden"),
    "model_params.vit.dim": (3 * 10**6, "model_params.vit.dim"),
    "model_params.vit.depth": (10**5, "model_params.vit.depth"),
    "model_params.resnet50.hidden_sizes": ([8192] * 4, "model_params.resnet50.hidden_sizes"),
    "train.epochs": (10**9, "train.epochs"),
    "train.batch_size": (10**9, "train.batch_size"),
    "features.n_mels": (10**6, "features.n_mels"),
    "features.sample_rate": (10**9, "features.sample_rate"),
    "features.max_file_seconds": (1e9, "features.max_file_seconds"),
    "data.xenocanto.max_recordings": (10**9, "data.xenocanto.max_recordings"),
    "data.retries": (10**6, "data.retries"),
}


@pytest.fixture
def raw_params(raw_params):
    """The front-end at fixed values: the bounds between ``auto`` values apply once resolved."""
    raw_params["features"].update(
        sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128, segment_seconds=4.0
    )
    return raw_params


def _with(raw: dict, dotted: str, value) -> dict:
    raw = copy.deepcopy(raw)
    *path, last = dotted.split(".")
    node = raw
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


@pytest.mark.parametrize("dotted", RUNAWAY)
def test_a_runaway_value_is_refused_naming_its_key(raw_params, dotted):
    value, key = RUNAWAY[dotted]
    with pytest.raises(
        ParamsError, match=rf"'{re.escape(key)}' (must be (null or )?[<>]=|.*above)"
    ):
        parse_params(_with(raw_params, dotted, value))


def test_an_ast_from_scratch_is_sized_before_it_is_built(raw_params):
    raw = _with(raw_params, "model_params.ast", {"pretrained": None, "hidden_size": 6144})
    raw["model_params"]["ast"].update(num_layers=200, num_heads=12)
    with pytest.raises(
        ParamsError, match=r"'model_params.ast.hidden_size' asks for about 3.77e\+10"
    ):
        parse_params(raw)


def test_a_segment_too_large_to_hold_names_what_makes_it(raw_params):
    raw = _with(raw_params, "features.segment_seconds", 600.0)
    raw["features"].update(hop_length=1, n_mels=1024, max_file_seconds=600.0)
    with pytest.raises(ParamsError, match=r"'features.segment_seconds' gives \(1, 1024, "):
        parse_params(raw)


def test_the_bounds_leave_ordinary_values_alone(raw_params):
    segment = raw_params["features"]["segment_seconds"]
    params = parse_params(_with(raw_params, "features.segment_hop_seconds", segment / 100))
    assert params.features.hop_samples == round(segment / 100 * params.features.sample_rate)
    parse_params(_with(raw_params, "evaluate.bootstrap", 100_000))
    parse_params(_with(raw_params, "model_params.cnn.channels", [64, 128, 256, 512, 512]))


# under every fixed bound, each too much for a machine of 1.4 GB: the machine is the real limit
FIXED_BOUNDS_PASS = {
    "model_params.cnn_v2.channels": ([1024, 2048, 4096, 4096, 4096], "model_params.cnn_v2"),
    "features.batch_size": (16384, "features.batch_size"),  # 1.45 GB of log-mel segments
    "features.max_file_seconds": (3 * 3600.0, "features.max_file_seconds"),  # 1.9 GB at 44.1 kHz
}


@pytest.mark.parametrize("dotted", FIXED_BOUNDS_PASS)
def test_a_size_the_machine_cannot_hold_is_refused_naming_both_sizes(
    raw_params, dotted, monkeypatch
):
    value, key = FIXED_BOUNDS_PASS[dotted]
    raw = _with(_with(raw_params, "features.sample_rate", 44100), dotted, value)
    raw["model"] = "cnn_v2"  # the model this run builds: only its size is held
    parse_params(raw)  # on a machine of 24 GB or more: within every fixed bound
    monkeypatch.setattr(schema, "memory_bytes", lambda: 1.4e9)
    with pytest.raises(ParamsError, match=rf"'{re.escape(key)}' asks for about .* GB at once"):
        parse_params(raw)
    with pytest.raises(ParamsError, match=r"more than this machine's 1.4 GB of memory"):
        parse_params(raw)
    monkeypatch.setattr(schema, "memory_bytes", lambda: None)  # unknown: only the fixed bounds
    parse_params(raw)


def test_only_the_chosen_model_is_sized_against_the_machine(raw_params, monkeypatch):
    raw = _with(raw_params, "model_params.cnn_v2.channels", [1024, 2048, 4096, 4096, 4096])
    monkeypatch.setattr(schema, "memory_bytes", lambda: 1.4e9)
    assert parse_params(raw).model == "cnn"  # cnn_v2's widths are not built by this run


def test_the_machine_memory_is_read_and_a_container_limit_lowers_it(tmp_path, monkeypatch):
    physical = schema.memory_bytes()
    assert physical is not None and physical > 10**8  # Linux: sysconf names the pages
    (tmp_path / "memory.max").write_text("1073741824\n")
    monkeypatch.setattr(schema, "CGROUP_LIMIT", str(tmp_path / "memory.max"))
    assert schema.memory_bytes() == min(physical, 1073741824)
    (tmp_path / "memory.max").write_text("max\n")  # cgroup v2: no limit set
    assert schema.memory_bytes() == physical
