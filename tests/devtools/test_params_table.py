"""The README's params table agrees with params.yaml and the config defaults, and the check finds drift."""

from pathlib import Path

import yaml

from audioclf.devtools.params_table import pattern, problems, table_rows

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def test_the_readme_table_params_yaml_and_the_dataclasses_agree():
    assert len(table_rows(README)) > 30
    assert problems(README, PARAMS) == []


def _readme(rows: str) -> str:
    return f"## Parameters\n\n| key | default | meaning |\n| --- | --- | --- |\n{rows}\n## Layout\n"


def test_a_stale_default_a_missing_row_and_an_unknown_key_are_found():
    params = {"train": {"lr": 0.001, "epochs": 30}, "audit": {"max_ber": 0.2}}
    readme = _readme(
        "| `train.lr` | `0.002` | rate |\n| `audit.max_ber` | `0.35` | stale |\n| `train.nope` | `1` | x |"
    )
    found = problems(readme, params)
    assert "README gives 'train.lr' the default 0.002; params.yaml has 0.001" in found
    assert "README gives 'audit.max_ber' the default 0.35; params.yaml has 0.2" in found
    assert "README names 'train.nope', which params.yaml lacks" in found
    assert "params.yaml key 'train.epochs' is in no row of the README's table" in found


def test_params_yaml_that_differs_from_the_dataclass_default_is_found():
    readme = _readme("| `train.lr` | `0.5` | rate |")
    assert problems(readme, {"train": {"lr": 0.5}}) == [
        "params.yaml gives 'train.lr' 0.5; its dataclass default is 0.001"
    ]


def test_patterns_match_one_key_or_everything_below():
    assert pattern("augment.<name>.p").fullmatch("augment.mixup.p")
    assert not pattern("augment.<name>.p").fullmatch("augment.mixup.alpha")
    assert pattern("model_params.<model>.*").fullmatch("model_params.cnn.channels")
    assert pattern("data.esc50.*").fullmatch("data.esc50.url") and not pattern(
        "data.esc50.*"
    ).fullmatch("data.emodb.url")
