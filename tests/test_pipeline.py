"""dvc.yaml agrees with params.yaml and with the code each stage imports."""

import ast
from pathlib import Path

import pytest
import yaml

from audioclf.pipeline import lock_problems, params_problems

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
# modules every stage imports that shape no output (the install check, logging and exit status, the
# exception classes): declaring them would rerun the whole pipeline, a 2-hour training included, for a
# change to how a message is printed
NO_OUTPUT_EFFECT = {
    REPO / "src/audioclf" / name for name in ("environment.py", "cli.py", "errors.py")
}
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def test_repo_params_and_dvc_yaml_agree():
    assert params_problems(DVC, PARAMS) == []


def test_missing_and_dead_params_are_reported():
    dvc = {"stages": {"train": {"params": ["train.lr", "model"]}}}
    problems = params_problems(dvc, {"train": {"lr": 1, "epochs": 2}})
    assert "stage 'train' declares param 'model', which params.yaml lacks" in problems
    assert (
        "params.yaml key 'train.epochs' is declared by no stage in dvc.yaml (dead flag?)"
        in problems
    )


def test_lock_problems_ignore_missing_outputs_only():
    status = {
        "split": [
            {"changed deps": {"data/raw/manifest.csv": "deleted"}},
            {"changed outs": {"data/split": "not in cache"}},
        ],
        "train": [
            {
                "changed deps": {
                    "src/audioclf/train.py": "modified",
                    "params.yaml": {"train.lr": "modified"},
                }
            },
            "changed command",
        ],
    }
    assert lock_problems(status) == [
        "train: dep 'src/audioclf/train.py' modified since dvc.lock",
        "train: param 'train.lr' modified since dvc.lock",
        "train: changed command",
    ]


def _audioclf_imports(path: Path) -> set[Path]:
    """The files of the audioclf modules ``path`` imports, at module level or inside a function
    (a lazy import is code the stage runs too); a package's ``__init__`` comes with its modules."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("audioclf"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("audioclf")]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for n in range(2, len(parts) + 1):  # the packages on the way are imported too
                base = SRC.joinpath(*parts[:n])
                for file in (base.with_suffix(".py"), base / "__init__.py"):
                    if file.is_file():
                        found.add(file)
    return found


def _closure(path: Path) -> set[Path]:
    seen, todo = set(), [path]
    while todo:
        for file in _audioclf_imports(todo.pop()) - seen:
            seen.add(file)
            todo.append(file)
    return seen


@pytest.mark.parametrize("stage", list(DVC["stages"]))
def test_stage_deps_cover_the_code_it_imports(stage):
    """Every audioclf module a stage script imports is a declared dep (file or folder), and every
    declared piece of library code is code the stage imports."""
    deps = [REPO / d for d in DVC["stages"][stage]["deps"]]
    assert REPO / f"stages/{stage}.py" in deps
    imported = _closure(REPO / f"stages/{stage}.py") - NO_OUTPUT_EFFECT
    for path in imported:
        assert any(path == d or d in path.parents for d in deps), (
            f"{stage} imports {path.relative_to(REPO)} but does not declare it"
        )
    for dep in deps:
        if SRC in dep.parents:  # declared library code must be code the stage runs
            assert any(p == dep or dep in p.parents for p in imported), (
                f"{stage} declares {dep.relative_to(REPO)} but never imports it"
            )


def test_switching_loss_or_split_never_reruns_features():
    """The features stage reads no loss/train/split param and no split output: DVC skips it. Of the
    model it reads the name only (``features.kind: auto`` is the model's own front-end) and
    model=hf's sample rate (the rate of the waveform it stores); a model whose front-end the store
    holds recomputes nothing (tests/features/test_fit_stage.py)."""
    stage = DVC["stages"]["features"]
    assert stage["params"] == ["features", "model", "model_params.hf.sample_rate"]
    assert not any(
        d.startswith(("data/split", "src/audioclf/models")) or d == "src/audioclf/train.py"
        for d in stage["deps"]
    )


@pytest.mark.parametrize("stage", list(DVC["stages"]))
def test_stage_runs_the_code_of_its_checkout(stage):
    """Queued and --temp experiments run in a copy of the repo; the stage must import that copy's
    library (the one DVC hashed as its deps), not an installed one that may have changed since."""
    assert " ".join(DVC["stages"][stage]["cmd"].split()).startswith(
        f"PYTHONPATH=src python stages/{stage}.py"
    )
