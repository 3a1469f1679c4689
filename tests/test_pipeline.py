"""dvc.yaml agrees with params.yaml and with the code each stage imports."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from audioclf.pipeline import lock_problems, params_problems

REPO = Path(__file__).resolve().parents[1]
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


@pytest.mark.parametrize("stage", list(DVC["stages"]))
def test_stage_deps_cover_the_code_it_imports(stage):
    """Every audioclf module a stage script imports is a declared dep (file or folder)."""
    code = (
        f"import importlib.util, sys; s = importlib.util.spec_from_file_location('s', 'stages/{stage}.py'); "
        "m = importlib.util.module_from_spec(s); "
        "s.loader.exec_module(m); print('\\n'.join(sorted(getattr(v, '__file__', '') or '' "
        "for k, v in sys.modules.items() if k.startswith('audioclf.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    deps = [REPO / d for d in DVC["stages"][stage]["deps"]]
    assert REPO / f"stages/{stage}.py" in deps
    imported = [
        Path(m).resolve()
        for m in filter(None, out.stdout.splitlines())
        if Path(m).resolve() not in NO_OUTPUT_EFFECT
    ]
    for path in imported:
        assert any(path == d or d in path.parents for d in deps), (
            f"{stage} imports {path} but does not declare it"
        )
    for dep in deps:
        if REPO / "src" in dep.parents:  # declared library code must be code the stage runs
            assert any(p == dep or dep in p.parents for p in imported), (
                f"{stage} declares {dep} but never imports it"
            )


def test_switching_loss_or_split_never_reruns_features():
    """The features stage reads no loss/train/split param and no split output: DVC skips it. Of the
    model it reads the name only (``features.kind: auto`` is the model's own front-end); a model
    whose front-end the store holds recomputes nothing (tests/features/test_fit_stage.py)."""
    stage = DVC["stages"]["features"]
    assert stage["params"] == ["features", "model"]
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
