"""Stages and commands end a user error with one line and exit 1; -v keeps the traceback; importing
the package, ``audioclf --help`` and a params typo cost no torch import."""

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from audioclf.cli import COMMANDS, dispatch, run

REPO = Path(__file__).resolve().parents[1]
SPLIT_ARGS = ["--manifest", "m.csv", "--out", "s", "--test-out", "t", "--report", "r.json"]


def _stage_main(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _python(code: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )


def test_a_bad_param_ends_the_stage_with_one_clear_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text(
        (REPO / "params.yaml").read_text().replace("  lr: 0.001", "  lr: fast")
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        run(_stage_main("split"), SPLIT_ARGS)
    assert stop.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "ERROR: params: 'train.lr' must be a number, got 'fast'"
    ]


def test_a_params_typo_is_reported_before_torch_is_imported(tmp_path):
    """The first stage DVC runs checks the whole params file and imports no torch."""
    (tmp_path / "params.yaml").write_text(
        (REPO / "params.yaml").read_text().replace("  lr: 0.001", "  lrr: 0.001")
    )
    out = _python(
        "import sys, runpy; sys.argv = ['source.py', '--out', 's.json']\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / 'stages/source.py')!r}, run_name='__main__')\n"
        "finally:\n"
        "    print('torch' in sys.modules)",
        cwd=tmp_path,
    )
    assert out.stdout.strip() == "False"
    assert "ERROR: params: 'train.lrr' is not a known key" in out.stderr, out.stderr


def test_verbose_shows_the_traceback_of_a_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUDIOCLF_VERBOSE", raising=False)
    args = ["--params", "missing.yaml", *SPLIT_ARGS]
    with pytest.raises(SystemExit):
        run(_stage_main("split"), args)
    assert "params file not found: missing.yaml" in capsys.readouterr().err
    with pytest.raises(Exception, match="params file not found") as raised:
        run(_stage_main("split"), [*args, "-v"])
    assert type(raised.value).__name__ == "MissingInputError"


def test_a_missing_input_names_the_stage_that_writes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        run(_stage_main("split"), ["--params", str(REPO / "params.yaml"), *SPLIT_ARGS])
    assert (
        capsys.readouterr().err.strip()
        == "ERROR: manifest not found: m.csv (run the download stage: dvc repro download)"
    )


def test_a_command_outside_the_repository_says_where_to_run_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run(dispatch, ["check", str(tmp_path)])
    assert stop.value.code == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert (
        out.err.strip()
        == f"ERROR: {tmp_path} has no dvc.yaml: run the check from the repository root"
    )


def test_every_command_names_a_module_with_a_main():
    for name, (module, about) in COMMANDS.items():
        assert callable(importlib.import_module(module).main), name
        assert about


def test_help_lists_the_user_commands_only(capsys):
    dispatch(["--help"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line[:2] == "  "]
    assert listed == list(COMMANDS)
    assert not any(name.startswith(("bench", "kill", "params")) for name in listed)


def test_an_unknown_command_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as stop:
        dispatch(["nope"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'nope'" in err and all(name in err for name in COMMANDS)


@pytest.mark.parametrize("args", [["--help"], ["predict", "--help"]])
def test_importing_the_package_and_its_help_load_no_torch_and_change_no_hook(args):
    out = _python(
        "import sys; hook = sys.excepthook\n"
        "import audioclf, audioclf.config, audioclf.cli\n"
        "try:\n"
        f"    audioclf.cli.dispatch({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'torchaudio', 'mlflow', 'scipy') if m in sys.modules]\n"
        "print('LOADED', heavy, sys.excepthook is hook)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LOADED [] True"


def test_predicts_help_states_the_predictors_batch_size(capsys):
    from audioclf.deploy.predictor import BATCH_SIZE

    with pytest.raises(SystemExit):
        dispatch(["predict", "--help"])
    assert f"(default: {BATCH_SIZE})" in " ".join(capsys.readouterr().out.split())
