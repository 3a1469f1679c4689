"""Phase checks: overrides as DVC applies them, validation reasons, pretrained weights offline."""

import pytest
from tests.conftest import repo_params

from audioclf.experiments.phases import (
    PHASES,
    apply_overrides,
    check_phase,
    parse_override,
    pretrained_problem,
)
from audioclf.features.birdnet import missing as birdnet_missing
from audioclf.features.opensmile import missing as opensmile_missing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train.lr=0.003", ("train.lr", 0.003)),
        ("split.leaky=true", ("split.leaky", True)),
        ("model_params.cnn.channels=[8, 16]", ("model_params.cnn.channels", [8, 16])),
        ("params.yaml:model=cnn_v2", ("model", "cnn_v2")),
        ("data.archive=null", ("data.archive", None)),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_parse_override_rejects_other_files_and_missing_values():
    with pytest.raises(ValueError, match="only params.yaml keys"):
        parse_override("other.yaml:x=1")
    with pytest.raises(ValueError, match="is not key=value"):
        parse_override("model")


def test_apply_overrides_copies_and_sets_only_existing_keys():
    raw = repo_params()
    out = apply_overrides(raw, ["train.epochs=2", "model=cnn_v2"])
    assert out["train"]["epochs"] == 2 and out["model"] == "cnn_v2" and raw["train"]["epochs"] != 2
    with pytest.raises(ValueError, match="params.yaml has no key 'train.epoch'"):
        apply_overrides(raw, ["train.epoch=2"])


def test_check_phase_gives_the_validation_message():
    raw = repo_params()
    assert check_phase(raw, ["model=cnn", "loss=ce", "train.epochs=1"]) is None
    assert check_phase(raw, ["train.epochs=0"]) == "params: 'train.epochs' must be >= 1, got 0"
    assert "'model' is 'nope'; allowed values:" in check_phase(raw, ["model=nope"])


def test_phases_without_weights_here_are_skipped_for_that_reason_and_the_others_run(tmp_path):
    raw = repo_params()
    verdicts = {
        p.name: check_phase(raw, p.overrides, cache_dir=tmp_path / "empty-hub") for p in PHASES
    }
    assert len(verdicts) == len(PHASES) == 11  # ten rungs and the leaky-split control
    for phase in PHASES:
        if "model=birdnet" in phase.overrides:  # offline: only the extra is needed
            assert verdicts[phase.name] == birdnet_missing(), verdicts[phase.name]
        elif "features.kind=compare" in phase.overrides:  # offline too: openSMILE's extra
            assert verdicts[phase.name] == opensmile_missing(), verdicts[phase.name]
        elif "model=ast" in phase.overrides:
            assert "model_params.ast.pretrained: weights" in verdicts[phase.name]
            assert "not available locally" in verdicts[phase.name]
        else:
            assert verdicts[phase.name] is None, (phase.name, verdicts[phase.name])


def test_the_birdnet_rung_is_skipped_without_its_extra_naming_it():
    raw = repo_params()
    verdict = check_phase(raw, ["model=birdnet", "loss=ce"])
    reason = birdnet_missing()
    assert verdict == reason  # None where the extra is installed
    if reason is not None:
        assert 'pip install -e ".[birdnet]"' in reason


def test_the_compare_rungs_are_skipped_without_the_opensmile_extra(monkeypatch):
    import audioclf.experiments.phases as phases

    raw = repo_params()
    names = ("compare-svm", "compare-svm-group")
    rungs = [p for p in PHASES if p.name in names]
    assert [p.title for p in rungs] == [
        "ComParE + linear SVM",
        "ComParE + linear SVM + speaker normalisation (train.norm: group, transductive)",
    ]
    assert all(check_phase(raw, p.overrides) == opensmile_missing() for p in rungs)
    monkeypatch.setattr(phases, "opensmile_missing", lambda kind: f"no openSMILE for {kind}")
    assert all(check_phase(raw, p.overrides) == "no openSMILE for compare" for p in rungs)


def _ast(pretrained):
    return {"model": "ast", "model_params": {"ast": {"pretrained": pretrained}}}


def test_pretrained_weights_must_be_local(tmp_path):
    reason = pretrained_problem(
        _ast("MIT/ast-finetuned-audioset-10-10-0.4593"), cache_dir=tmp_path / "hub"
    )
    assert (
        "model_params.ast.pretrained: weights 'MIT/ast-finetuned-audioset-10-10-0.4593' not available"
        in reason
    )
    assert pretrained_problem(_ast(None)) is None  # from scratch
    assert pretrained_problem({"model": "cnn", "model_params": {"cnn": {"channels": [8]}}}) is None

    folder = tmp_path / "ast"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert "holds no config.json with weights" in pretrained_problem(_ast(str(folder)))
    (folder / "model.safetensors").write_bytes(b"")
    assert pretrained_problem(_ast(str(folder))) is None


def test_pretrained_hub_id_found_in_the_cache(tmp_path):
    """A Hub id counts as present when the Hugging Face cache holds its config and weights."""
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("abc123")
    (snapshot / "config.json").write_text("{}")
    assert "not available locally" in pretrained_problem(_ast("org/tiny"), cache_dir=tmp_path)
    (snapshot / "model.safetensors").write_bytes(b"")
    assert pretrained_problem(_ast("org/tiny"), cache_dir=tmp_path) is None
