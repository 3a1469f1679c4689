"""The phase ladder: planning, reading results back, the report; and once through DVC's queue."""

import json
import re
import subprocess
import sys

import pytest
from tests.conftest import repo_params, run

from audioclf.experiments import dvc_exps, show
from audioclf.experiments.ladder import main, plan, summarise
from audioclf.experiments.phase_report import TRANSDUCTIVE_NOTE, PhaseResult, render
from audioclf.experiments.phases import PHASES, Phase


def test_plan_names_seeded_runs_and_keeps_every_phase():
    planned = plan(repo_params(), extra=["train.epochs=1"], seeds=3, only=["baseline"], tag="t")
    assert [p.phase.name for p in planned] == [p.name for p in PHASES]
    base = planned[0]
    assert list(base.runs) == ["baseline-t-s42", "baseline-t-s43", "baseline-t-s44"]
    assert base.runs["baseline-t-s43"] == ["model=cnn", "loss=ce", "train.epochs=1", "seed=43"]
    for item in planned[1:]:
        assert not item.runs and (item.reason or not item.selected)


def test_plan_rejects_bad_input_before_anything_runs():
    with pytest.raises(ValueError, match="--set: params: 'train.epochs' must be >= 1, got 0"):
        plan(repo_params(), extra=["train.epochs=0"])
    with pytest.raises(ValueError, match=r"unknown phase\(s\) \['nope'\]"):
        plan(repo_params(), only=["nope"])
    with pytest.raises(ValueError, match="seed key 'train.lr' is not an integer param"):
        plan(repo_params(), seeds=2, seed_key="train.lr")


def test_dry_run_queues_nothing(caplog, tmp_path):
    (tmp_path / "params.yaml").write_text(json.dumps(repo_params()))
    with caplog.at_level("INFO", logger="audioclf"):
        out = main(["--params", str(tmp_path / "params.yaml"), "--dry-run", "--seeds", "2"])
    printed = caplog.text
    assert "dvc exp run --queue -n baseline-s42 -S model=cnn -S loss=ce -S seed=42" in printed
    assert set(out) == {"planned"} and not (tmp_path / "reports").exists()


def _shown(experiments: list[dict]) -> list[dict]:
    """A minimal ``dvc exp show --json``: workspace, one baseline commit and its experiments."""
    return [
        {"rev": "workspace", "name": None, "data": {}, "error": None, "experiments": None},
        {
            "rev": "abc",
            "name": "main",
            "data": {},
            "error": None,
            "experiments": [
                {"name": e["name"], "executor": None, "revs": [e]} for e in experiments
            ],
        },
    ]


def _exp(name, accuracy, error=None, timestamp="2026-01-01T10:00:00"):
    metrics = {"reports/metrics.json": {"data": {"test": {"accuracy": accuracy}}}}
    return {
        "rev": name,
        "name": name,
        "error": error,
        "data": {
            "timestamp": timestamp,
            "metrics": metrics,
            "params": {"params.yaml": {"data": {"seed": 1}}},
        },
    }


def test_collect_ignores_a_failed_experiments_copied_metrics():
    shown = _shown(
        [
            _exp("a", 0.5),
            _exp("b", 0.9, error={"msg": "Experiment run failed", "type": ""}),
            _exp("c", 0.1, timestamp="2026-01-01T09:00:00"),
            _exp("c", 0.3),
            _exp("other", 0.2),
        ]
    )
    found = dvc_exps.collect(shown, ["a", "b", "c", "missing"])
    assert found["a"]["metrics"]["test"]["accuracy"] == 0.5 and found["a"]["params"] == {"seed": 1}
    assert found["b"] == {
        "error": "Experiment run failed"
    }  # not the 0.9 it carries from its baseline
    assert found["c"]["metrics"]["test"]["accuracy"] == 0.3  # the latest of one name
    assert set(found) == {"a", "b", "c"}


def test_failure_reason_is_the_last_exception(monkeypatch):
    log = (
        "Running stage 'train':\nTraceback (most recent call last):\n  File 'x'\n"
        "audioclf.config.ParamsError: params: 'loss' is 'focal'; allowed values: ce\n"
        "ERROR: failed to reproduce 'train': failed to run: python stages/train.py, exited with 1\n"
    )
    monkeypatch.setattr(dvc_exps, "dvc", lambda args, cwd: log)
    assert dvc_exps.failure_reason("x", None) == (
        "audioclf.config.ParamsError: params: 'loss' is 'focal'; allowed values: ce"
    )


def test_summary_and_table_golden():
    phases = [
        Phase("base", "CNN + CE", ("model=cnn",)),
        Phase("v2", "CNNv2", ("model=cnn_v2",)),
        Phase("ast", "AST", ("model=ast",)),
        Phase("half", "half | failed", ("x=1",)),
    ]
    planned = plan(repo_params(), phases[:2], seeds=2)
    planned[1].runs = {"v2-s42": [], "v2-s43": []}
    found = {
        "base-s42": {"metrics": {"test": {"accuracy": 0.5, "ece": 0.2}}},
        "base-s43": {"metrics": {"test": {"accuracy": 0.7, "ece": 0.1}}},
        "v2-s42": {"metrics": {"test": {"accuracy": 0.8, "ece": 0.05}}},
        "v2-s43": {"error": "CUDA out of memory"},
    }
    results = summarise(planned, found) + [
        PhaseResult("ast", "AST", "skipped", "params: 'model' is 'ast'"),
        PhaseResult("half", "half | failed", "failed", "a|b"),
    ]
    assert results[1].status == "ran" and results[1].experiments == ["v2-s42"]
    assert results[1].note == "1 of 2 run(s) failed: v2-s43: CUDA out of memory"
    table = render(results, baseline="base", header=["h"])
    rows = {
        line.split(" | ")[0]: line.split(" | ")
        for line in table.splitlines()
        if line.startswith("| ")
    }
    base, v2 = rows["| CNN + CE (`base`)"], rows["| CNNv2 (`v2`)"]
    assert (
        base[1:3] == ["2", "60.0 ± 14.1"] and base[9] == "15.0 ± 7.1"
    )  # accuracy, ECE: mean ± sample std
    assert (
        v2[1:3] == ["1", "80.0 (+20.0)"] and v2[9] == "5.0 (-10.0)"
    )  # differences from the baseline mean
    assert rows["| AST (`ast`)"][-1] == "skipped: params: 'model' is 'ast' |"
    assert "| half \\| failed (`half`) |" in table and "failed: a\\|b |" in table  # pipes escaped
    assert "†" not in table  # no run normalised per group


def test_a_group_normalised_phase_is_marked_next_to_its_metrics():
    phases = [Phase("base", "CNN + CE", ("model=cnn",)), Phase("g", "CNN + group", ("model=cnn",))]
    planned = plan(repo_params(), phases)
    found = {
        "base": {"metrics": {"test": {"accuracy": 0.5}, "transductive": False}},
        "g": {"metrics": {"test": {"accuracy": 0.6}, "input_norm": "group", "transductive": True}},
    }
    table = render(summarise(planned, found), baseline="base", header=["h"])
    assert "| CNN + group (`g`) † | 1 | 60.0 (+10.0)" in table
    assert "| CNN + CE (`base`) | 1 |" in table
    assert table.rstrip().endswith(TRANSDUCTIVE_NOTE)


def test_show_keeps_the_columns_that_matter():
    cmd = show.exp_show_command(["--csv"])
    keep = re.compile(cmd[cmd.index("--keep") + 1])
    for column in (
        "Experiment",
        "rev",
        "dataset",
        "model",
        "loss",
        "augment.mixup.p",
        "test.accuracy",
        "test.macro_f1",
        "test.macro_map",
        "reports/metrics.json:test.accuracy",
        "buckets.tail.macro_f1",
    ):
        assert keep.match(column), column
    for column in (
        "train.lr",
        "test.ece",
        "test_ci.accuracy",
        "folds.0.accuracy",
        "data/features",
        "best_epoch",
    ):
        assert not keep.match(column), column
    assert show.exp_show_command(["--all", "--md"]) == ["dvc", "exp", "show", "--md"]


@pytest.mark.slow
def test_ladder_through_the_dvc_queue(project):  # noqa: F811 (the imported fixture)
    """Baseline over two seeds through the queue; every other phase listed, skipped ones with their reason."""
    root, env = project
    ladder = [
        sys.executable,
        "-m",
        "audioclf.experiments.ladder",
        "--phases",
        "baseline",
        "--seeds",
        "2",
        "--set",
        "train.epochs=1",
        "--set",
        "evaluate.bootstrap=100",
    ]
    run(ladder, root, env)
    text = (root / "reports/phases.md").read_text()
    rows = {
        m.group(1): line
        for line in text.splitlines()
        if (m := re.match(r"\| .* \(`([\w-]+)`\) \|", line))
    }
    assert list(rows) == [p.name for p in PHASES]
    cells = rows["baseline"].split(" | ")
    assert cells[1] == "2" and " ± " in cells[2] and cells[-1] == "ran |"
    for name, line in rows.items():
        if name != "baseline":
            assert re.search(r"\| (skipped: \S.*|not selected: not in --phases) \|$", line), line
    assert "`baseline-s42`, `baseline-s43`" in text

    again = subprocess.run(ladder, cwd=root, env=env, capture_output=True, text=True)
    assert (
        again.returncode != 0
        and "already used on this commit: baseline-s42, baseline-s43" in again.stderr
    )

    header = (
        run([sys.executable, "-m", "audioclf.experiments.show", "--csv"], root, env)
        .splitlines()[0]
        .split(",")
    )
    assert {
        "Experiment",
        "model",
        "loss",
        "test.accuracy",
        "test.macro_f1",
        "test.macro_map",
    } <= set(header)
    assert "train.lr" not in header and "test_ci.accuracy" not in header

    code = (
        "import json, mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
        "runs = mlflow.search_runs(search_all_experiments=True, output_format='list'); "
        "print(json.dumps({r.data.tags.get('dvc_exp_name'): [a.path for a in mlflow.artifacts.list_artifacts("
        "run_id=r.info.run_id, artifact_path='evaluation')] for r in runs}))"
    )
    logged = json.loads(run([sys.executable, "-c", code], root, env).strip().splitlines()[-1])
    assert {
        "evaluation/reliability.png",
        "evaluation/per_class_f1.png",
        "evaluation/confusion_matrix.png",
    } <= set(logged["baseline-s43"])
