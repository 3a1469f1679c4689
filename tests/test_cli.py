"""Stages and commands end a user error with one line and exit 1; -v keeps the traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from audioclf.cli import COMMANDS, dispatch

REPO = Path(__file__).resolve().parents[1]


def _stage(args, tmp_path, **env):
    base = {k: v for k, v in os.environ.items() if k != "AUDIOCLF_VERBOSE"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "PYTHONPATH": str(REPO / "src"), **env},
    )


def test_a_bad_param_ends_the_stage_with_one_clear_line(tmp_path):
    (tmp_path / "params.yaml").write_text(
        (REPO / "params.yaml").read_text().replace("  lr: 0.001", "  lr: fast")
    )
    out = _stage(
        [
            str(REPO / "stages/split.py"),
            "--manifest",
            "m.csv",
            "--out",
            "s",
            "--test-out",
            "t",
            "--report",
            "r.json",
        ],
        tmp_path,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "ERROR: params: 'train.lr' must be a number, got 'fast'"
    ]


def test_verbose_shows_the_traceback_of_a_user_error(tmp_path):
    args = [
        str(REPO / "stages/split.py"),
        "--params",
        "missing.yaml",
        "--manifest",
        "m.csv",
        "--out",
        "s",
        "--test-out",
        "t",
        "--report",
        "r.json",
    ]
    quiet, loud = _stage(args, tmp_path), _stage([*args, "-v"], tmp_path)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert "params file not found: missing.yaml" in quiet.stderr
    assert (
        loud.returncode == 1 and "Traceback" in loud.stderr and "MissingInputError" in loud.stderr
    )


def test_a_missing_input_names_the_stage_that_writes_it(tmp_path):
    out = _stage(
        [
            str(REPO / "stages/split.py"),
            "--params",
            str(REPO / "params.yaml"),
            "--manifest",
            "m.csv",
            "--out",
            "s",
            "--test-out",
            "t",
            "--report",
            "r.json",
        ],
        tmp_path,
    )
    assert out.returncode == 1
    assert (
        out.stderr.strip()
        == "ERROR: manifest not found: m.csv (run the download stage: dvc repro download)"
    )


def test_a_command_outside_the_repository_says_where_to_run_it(tmp_path):
    out = _stage(["-m", "audioclf", "check", str(tmp_path)], tmp_path)
    assert out.returncode == 1 and out.stdout == ""
    assert (
        out.stderr.strip()
        == f"ERROR: {tmp_path} has no dvc.yaml: run the check from the repository root"
    )


def test_every_command_names_a_module_with_a_main():
    import importlib

    for name, (module, about) in COMMANDS.items():
        assert callable(importlib.import_module(module).main), name
        assert about


def test_an_unknown_command_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as stop:
        dispatch(["nope"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'nope'" in err and all(name in err for name in COMMANDS)
