"""The phase ladder: planning, reading results back, the report; and once through DVC's queue."""

import json
import re
import subprocess
import sys

import pytest
from tests.conftest import repo_params, run

from audioclf.experiments import dvc_exps, ladder, show
from audioclf.experiments.ladder import main, plan, summarise
from audioclf.experiments.phase_report import TRANSDUCTIVE_NOTE, PhaseResult, render
from audioclf.experiments.phases import PHASES, Phase


def test_plan_names_seeded_runs_and_keeps_every_phase():
    planned = plan(repo_params(), extra=["train.epochs=1"], seeds=3, only=["baseline"], tag="t")
    assert [p.phase.name for p in planned] == [p.name for p in PHASES]
    base = planned[0]
    assert list(base.runs) == ["baseline-t-s42", "baseline-t-s43", "baseline-t-s44"]
    assert base.runs["baseline-t-s43"] == [
        "model=cnn",
        "loss=ce",
        "train.epochs=1",
        "train.seed=43",
    ]
    assert base.seeds == {"baseline-t-s42": 42, "baseline-t-s43": 43, "baseline-t-s44": 44}
    for item in planned[1:]:
        assert not item.runs and (item.reason or not item.selected)
    split = plan(repo_params(), seeds=2, vary="split", only=["baseline"])[0]
    assert split.runs["baseline-s43"] == ["model=cnn", "loss=ce", "seed=43", "train.seed=43"]
    one = plan(repo_params(), only=["baseline"])[0]
    assert one.runs == {"baseline": ["model=cnn", "loss=ce"]} and one.seeds == {"baseline": None}


def test_a_set_train_seed_starts_the_series():
    raw = repo_params()
    raw["train"]["seed"] = 7
    base = plan(raw, seeds=2, only=["baseline"])[0]
    assert list(base.runs) == ["baseline-s7", "baseline-s8"]
    assert list(plan(raw, seeds=2, vary="split", only=["baseline"])[0].runs) == [
        "baseline-s42",
        "baseline-s43",
    ]


def test_plan_rejects_bad_input_before_anything_runs():
    with pytest.raises(ValueError, match="--set: params: 'train.epochs' must be >= 1, got 0"):
        plan(repo_params(), extra=["train.epochs=0"])
    with pytest.raises(ValueError, match=r"unknown phase\(s\) \['nope'\]"):
        plan(repo_params(), only=["nope"])
    with pytest.raises(ValueError, match="vary must be one of train, split, got 'data'"):
        plan(repo_params(), seeds=2, vary="data")


def test_dry_run_queues_nothing(caplog, tmp_path):
    (tmp_path / "params.yaml").write_text(json.dumps(repo_params()))
    with caplog.at_level("INFO", logger="audioclf"):
        out = main(["--params", str(tmp_path / "params.yaml"), "--dry-run", "--seeds", "2"])
    printed = caplog.text
    assert "dvc exp run --queue -n baseline-s42 -S model=cnn -S loss=ce -S train.seed=42" in printed
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
    assert found["a"]["rev"] == "a"  # the commit its files are read from
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
    base, v2 = rows["| CNN + CE (`base`) ← baseline"], rows["| CNNv2 (`v2`)"]
    assert (
        base[1:3] == ["2", "60.0 ± 14.1"] and base[9] == "15.0 ± 7.1"
    )  # accuracy, ECE: mean ± sample std
    assert v2[1:3] == ["1", "80.0"] and v2[9] == "5.0"  # values only: differences need intervals
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
    assert "| CNN + group (`g`) † | 1 | 60.0 |" in table
    assert "| CNN + CE (`base`) ← baseline | 1 | 50.0 |" in table
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
        "train.seed",
        "split.leaky",
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
    """Baseline and the leaky-split control over two training seeds through the queue; every other
    phase listed, skipped ones with their reason; then compare and report on those experiments."""
    root, env = project
    ladder = [
        sys.executable,
        "-m",
        "audioclf.ladder",
        "--phases",
        "baseline,leaky-split",
        "--seeds",
        "2",
        "--set",
        "train.epochs=2",
        "--set",
        "evaluate.bootstrap=100",
    ]
    run(ladder, root, env)
    text = (root / "reports/phases.md").read_text()
    metrics_table, comparison = text.split("## Against `baseline`")
    rows = {
        m.group(1): line
        for line in metrics_table.splitlines()
        if (m := re.match(r"\| .* \(`([\w-]+)`\)( ← baseline)? \|", line))
    }
    assert list(rows) == [p.name for p in PHASES]
    cells = rows["baseline"].split(" | ")
    assert cells[1] == "2" and " ± " in cells[2] and cells[-1] == "ran |"
    for name, line in rows.items():
        if name not in ("baseline", "leaky-split"):
            assert re.search(r"\| (skipped: \S.*|not selected: not in --phases) \|$", line), line
    assert "`baseline-s42`, `baseline-s43`" in text
    assert "with `train.seed` = 42, 43" in text and "100 bootstrap resamples" in text
    leaky = next(line for line in comparison.splitlines() if "(`leaky-split`)" in line)
    assert leaky.startswith("| CNN + CE, leaky split (control) (`leaky-split`) | 2 | ")
    assert "(seeds [" in leaky and "; files [" in leaky and "| unpaired |" in leaky
    assert "| `leaky-split-s43` | `baseline-s43` |" in comparison

    again = subprocess.run(ladder, cwd=root, env=env, capture_output=True, text=True)
    assert (
        again.returncode != 0
        and "already used on this commit: baseline-s42, baseline-s43" in again.stderr
    )

    # two training seeds on one split: the same test files, so the comparison is paired
    compare = [sys.executable, "-m", "audioclf.compare", "baseline-s42", "baseline-s43"]
    out = run([*compare, "--out", "reports/cmp.md"], root, env)
    assert out == "" and "Paired on the same" in (root / "reports/cmp.md").read_text()
    run([*compare[:-1], "baseline-s42", "--out", "reports/self.md"], root, env)
    assert "Significant: none." in (root / "reports/self.md").read_text()

    header = (
        run([sys.executable, "-m", "audioclf.experiments.show", "--csv"], root, env)
        .splitlines()[0]
        .split(",")
    )
    assert {
        "Experiment",
        "model",
        "loss",
        "train.seed",
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
        "evaluation/probabilities.csv",
    } <= set(logged["baseline-s43"])

    _check_report(root, env)


def _check_report(root, env):
    """``audioclf report`` on a queued experiment: its numbers are the MLflow run's and the metrics file's."""
    cmd = [sys.executable, "-m", "audioclf.report", "baseline-s43", "--against", "baseline-s42"]
    run([*cmd, "--target", "test.accuracy=0.0", "--out", "reports/r.md"], root, env)
    text = (root / "reports/r.md").read_text()
    assert (root / "reports/r_files/progression_fold_0.png").stat().st_size > 1000
    assert "![confusion matrix](r_files/confusion_matrix.png)" in text
    code = (
        "import json, mlflow; from mlflow.tracking import MlflowClient; "
        "mlflow.set_tracking_uri('sqlite:///mlflow.db'); c = MlflowClient(); "
        "r = [r for r in mlflow.search_runs(search_all_experiments=True, output_format='list') "
        "if r.data.tags.get('dvc_exp_name') == 'baseline-s43'][0]; "
        "h = {k: {m.step: m.value for m in c.get_metric_history(r.info.run_id, k)} "
        "for k in ('train_loss', 'val_loss', 'val_accuracy', 'val_macro_f1')}; "
        "print(json.dumps({'id': r.info.run_id, 'h': h, 'test': r.data.metrics['test_macro_f1']}))"
    )
    tracked = json.loads(run([sys.executable, "-c", code], root, env).strip().splitlines()[-1])
    assert f"MLflow run `{tracked['id']}`" in text
    table = text.split("## Training progression")[1].split("## Train, validation")[0]
    rows = [
        [c.strip(" *") for c in line.strip("|").split("|")]
        for line in table.splitlines()
        if re.match(r"\| \**\d", line)
    ]
    assert len(rows) == len(tracked["h"]["val_loss"]) == 2
    for row in rows:
        epoch = row[0].split()[0]
        assert row[1] == f"{tracked['h']['train_loss'][epoch]:.4f}"
        assert row[2] == f"{tracked['h']['val_loss'][epoch]:.4f}"
        assert row[4] == f"{100 * tracked['h']['val_accuracy'][epoch]:.1f}"
        assert row[6] == f"{100 * tracked['h']['val_macro_f1'][epoch]:.1f}"
    shown = dvc_exps.collect(
        json.loads(run(["dvc", "exp", "show", "--json"], root, env)), ["baseline-s43"]
    )
    test = shown["baseline-s43"]["metrics"]["test"]
    assert test["macro_f1"] == tracked["test"]
    assert f"| macro-F1 | {100 * test['macro_f1']:.1f} |" in text
    assert f"| accuracy | {100 * test['accuracy']:.1f} |" in text
    assert "| `test.accuracy` ≥ 0 |" in text and "1 of 1 criteria met." in text
    assert "### Against `baseline-s42`" in text and "Paired on the same" in text


def test_repeat_varies_the_training_seed_unless_told_otherwise(caplog, tmp_path):
    from audioclf.experiments import repeat

    (tmp_path / "params.yaml").write_text(json.dumps(repo_params()))
    args = ["--params", str(tmp_path / "params.yaml"), "--dry-run", "-n", "2", "-S", "loss=focal"]
    with caplog.at_level("INFO", logger="audioclf"):
        runs = repeat.main(args)["planned"][0].runs
    assert runs["repeat-s43"] == ["loss=focal", "train.seed=43"]
    assert "dvc exp run --queue -n repeat-s42 -S loss=focal -S train.seed=42" in caplog.text
    split = repeat.main([*args, "--vary", "split"])["planned"][0].runs
    assert split["repeat-s43"] == ["loss=focal", "seed=43", "train.seed=43"]


def test_results_are_read_from_the_commit_the_runs_were_queued_from(monkeypatch, tmp_path):
    # a commit made while the queue ran must not hide the ladder's experiments
    shown = []
    monkeypatch.setattr(dvc_exps, "head", lambda cwd: "b" * 40)  # HEAD moved on
    monkeypatch.setattr(dvc_exps, "show", lambda cwd, rev=None: shown.append(rev) or [])
    monkeypatch.setattr(dvc_exps, "failure_reason", lambda name, cwd: "absent")
    found = ladder.read_back(["baseline"], tmp_path, "a" * 40)
    assert shown == ["a" * 40] and found == {"baseline": {"error": "absent"}}
