"""End to end through DVC and MLflow on a git+DVC copy of the repository with shrunk params, the
one place the suite runs ``dvc``: ``dvc repro`` (export and ``audioclf predict`` after it, and a
forced rerun that must repeat the metrics exactly), a *queued* 2-fold cross-validated experiment
(which executes in a temporary copy under .dvc/tmp/exps and must still log to the repository's
MLflow store), sharing through a DVC remote and a bare git repository (a fresh clone's ``dvc pull``
brings everything, its ``dvc repro`` recomputes nothing, and ``dvc exp pull`` brings the
experiment), and ``audioclf tune --apply`` (the best trial run as an experiment).
The tests run in order on one copy, each on what the one before left.
"""

import json
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import soundfile as sf
import yaml
from tests.conftest import mlflow_runs, registered_versions, run, stage_main

from audioclf.cli import run as run_main

pytestmark = pytest.mark.slow


def experiments(root: Path, env: dict) -> dict:
    """``dvc exp show``'s params and metrics by name (the baseline commit is ``baseline``)."""
    out = {}
    for commit in json.loads(run(["dvc", "exp", "show", "--json"], root, env)):
        if commit.get("rev") == "workspace":
            continue
        revs = [e for ex in commit.get("experiments") or [] for e in ex.get("revs", [])]
        for exp in [commit, *revs]:
            data = exp.get("data") or {}
            name = "baseline" if exp is commit else exp.get("name") or data.get("name")
            out[name] = {"params": data.get("params"), "metrics": data.get("metrics")}
    return out


def logged(cmd: list[str], cwd: Path, env: dict) -> str:
    """stdout and stderr of a command that must succeed (the stages log on stderr)."""
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout + out.stderr


def only_source_runs(repro: str) -> bool:
    """The source stage looks at data.archive on every run (always changed) and writes what it
    found; that is what download saw, so nothing downstream reruns."""
    assert repro.count("Running stage") == 1 and "Running stage 'source'" in repro, repro
    return True


def up_to_date(status: str) -> bool:
    """``dvc status`` with nothing to do but the always-changed source stage."""
    assert status.split() == ["source:", "always", "changed"], status
    return True


@pytest.fixture(scope="module")
def shared(project, tmp_path_factory):
    """The copy with a bare git repository as ``origin`` and a DVC remote on a local path."""
    root, env = project
    where = tmp_path_factory.mktemp("shared")
    remote, storage = where / "origin.git", where / "storage"
    run(["git", "init", "-q", "--bare", str(remote)], where, env)
    run(["git", "remote", "add", "origin", str(remote)], root, env)
    run(["dvc", "remote", "add", "-d", "storage", str(storage)], root, env)
    return root, env, remote


def test_repro_then_export_predict_and_the_same_metrics_again(shared):
    root, env, _ = shared
    repro = logged(["dvc", "repro"], root, env)
    # it ends with the run's summary (then DVC's own lines), and trained watchably
    assert "train: fold 0: epoch 1/3: train loss" in repro
    assert "done: test macro-F1" in repro.split("Running stage 'export'")[1]
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert set(metrics["test"]) >= {"accuracy", "macro_f1", "weighted_f1", "macro_map"}
    assert (root / "reports/confusion_matrix.png").stat().st_size > 1000
    exported = json.loads((root / "exported/model.json").read_text())  # the export stage ran
    assert (root / "exported/model.onnx").stat().st_size > 10_000
    assert exported["parity"]["top1_identical"] and exported["parity"]["max_abs_logit_diff"] <= 1e-4
    assert "up to date" in run(["dvc", "status", "export"], root, env)  # in step with dvc repro
    predicted = root / "predictions"
    # --min-score 0: every window's top label (the shrunk model is seldom sure enough to detect)
    cmd = ["python", "-m", "audioclf", "predict", "data/raw", "--out", str(predicted)]
    run([*cmd, "--min-score", "0"], root, env)
    assert (predicted / "windows.csv").read_text().count("\n") > 10

    first = (root / "reports/metrics.json").read_text()
    run(["dvc", "repro", "--force", "train", "evaluate"], root, env)
    assert (root / "reports/metrics.json").read_text() == first, "same seed, same metrics"
    run(["dvc", "repro"], root, env)  # the export of the new checkpoint (it names its own run)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "baseline"], root, env)


def test_a_queued_cross_validation_logs_to_the_repositorys_store(shared):
    root, env, _ = shared
    settings = ["-S", "split.strategy=kfold", "-S", "split.k=2", "-S", "model=cnn_v2"]
    run(["dvc", "exp", "run", "--queue", "-n", "cv2", *settings], root, env)
    run(["dvc", "queue", "start"], root, env)
    deadline = time.time() + 600
    while "cv2" not in run(["dvc", "exp", "list", "--name-only"], root, env):
        status = run(["dvc", "queue", "status"], root, env)
        assert "Failed" not in status, logged(["dvc", "queue", "logs", "cv2"], root, env)
        assert time.time() < deadline, "the queued experiment did not finish in 10 minutes"
        time.sleep(3)
    shown = experiments(root, env)
    assert shown["cv2"]["params"]["params.yaml"]["data"]["model"] == "cnn_v2"
    cv = shown["cv2"]["metrics"]["reports/metrics.json"]["data"]
    assert set(cv["folds"]) == {"0", "1"} and set(cv["test_std"]) == set(cv["test"])
    mean = sum(f["macro_f1"] for f in cv["folds"].values()) / 2
    assert cv["test"]["macro_f1"] == pytest.approx(mean, abs=1e-4)
    ci = cv["test_ci"]["macro_f1"]  # shown by dvc exp show: a mapping, not a list
    assert ci["low"] <= cv["test_pooled"]["macro_f1"] <= ci["high"]

    # the queued run executed in .dvc/tmp/exps/..., yet its run and artifacts are the repository's
    runs = mlflow_runs(root)
    assert not list((root / ".dvc/tmp").rglob("mlflow.db")), "a queued run made its own store"
    assert not list((root / ".dvc/tmp").rglob("mlruns"))
    queued = [r for r in runs if r["tags"].get("dvc_exp_name") == "cv2"]
    (parent,) = [r for r in queued if "mlflow.parentRunId" not in r["tags"]]
    children = [r for r in queued if "mlflow.parentRunId" in r["tags"]]
    assert parent["status"] == "FINISHED" and len(children) == 2
    assert "test_macro_f1" in parent["metrics"] and "evaluation" in parent["artifacts"]
    assert not [k for k in parent["metrics"] if "_ci_" in k]  # in evaluation/test_metrics.json
    assert all("test_macro_f1" in c["metrics"] and "val/macro_f1" in c["metrics"] for c in children)
    # named after the DVC experiment, with what it set (against the committed params.yaml)
    assert parent["name"] == "cv2" and {c["name"] for c in children} == {"cv2-fold0", "cv2-fold1"}
    assert parent["tags"]["params_changed"] == "model=cnn_v2 split.k=2 split.strategy=kfold"
    store = (root / "mlartifacts").resolve()
    for r in [parent, *children]:
        assert Path(r["artifact_uri"].removeprefix("file://")).resolve().is_relative_to(store)
    assert parent["tags"]["git_commit"] != "unknown"
    trainings = [r for r in runs if "mlflow.parentRunId" not in r["tags"]]
    versions = registered_versions(root)
    assert len(versions) == len(trainings) and "cv2" in {
        v["tags"]["dvc_exp_name"] for v in versions
    }


def test_a_fresh_clone_pulls_everything_and_recomputes_nothing(shared, tmp_path):
    root, env, remote = shared
    reports = {n: (root / "reports" / n).read_text() for n in ("metrics.json", "train.json")}
    run(["dvc", "push"], root, env)  # raw data, split lists, features, models
    run(["git", "push", "-q", "origin", "HEAD:main"], root, env)
    run(["dvc", "exp", "push", "origin", "cv2"], root, env)  # its git ref and its outputs
    shown = experiments(root, env)
    # the origin's store survived DVC's commit of the table
    rerun = logged(["dvc", "repro", "--force", "features"], root, env)
    assert "(0 files computed, " in rerun, rerun

    fresh = tmp_path / "fresh"
    run(["git", "clone", "-q", "-b", "main", str(remote), str(fresh)], tmp_path, env)
    assert not (fresh / "data").exists()
    run(["dvc", "pull"], fresh, env)
    assert (fresh / "models/fold_0/best.pt").is_file() and (fresh / "data/features").is_dir()
    assert not (fresh / "data/resume").exists() and not (fresh / "data/feature_store").exists()
    assert only_source_runs(logged(["dvc", "repro"], fresh, env))
    assert up_to_date(run(["dvc", "status"], fresh, env))
    for name, text in reports.items():
        assert (fresh / "reports" / name).read_text() == text, name

    run(["dvc", "exp", "pull", "origin", "cv2"], fresh, env)  # its ref and its outputs
    assert experiments(fresh, env) == shown and set(shown) == {"baseline", "cv2"}
    run(["dvc", "exp", "apply", "cv2"], fresh, env)
    assert yaml.safe_load((fresh / "params.yaml").read_text())["model"] == "cnn_v2"
    assert only_source_runs(logged(["dvc", "repro"], fresh, env))

    # the clone's feature store is empty: a forced features run recomputes the table exactly
    run(["git", "checkout", "-q", "--", "."], fresh, env)
    run(["git", "clean", "-fdq", "--", "reports"], fresh, env)  # cv2's other folds' curves
    run(["dvc", "checkout", "-q"], fresh, env)
    rebuilt = logged(["dvc", "repro", "--force", "features"], fresh, env)
    assert ", 0 from the store)" in rebuilt, rebuilt
    assert up_to_date(run(["dvc", "status"], fresh, env))  # the same hash as the origin's


def test_tune_apply_scores_the_best_trial_once_as_a_dvc_experiment(shared):
    root, env, _ = shared
    cmd = ["python", "-m", "audioclf", "tune", "--trials", "3", "--study", "tuned", "--apply"]
    out = logged(cmd, root, env)
    study = optuna.load_study(study_name="tuned", storage=f"sqlite:///{root}/data/tune/optuna.db")
    assert len(study.trials) == 3
    shown = experiments(root, env)["tuned"]
    params = shown["params"]["params.yaml"]["data"]
    for key, value in study.best_trial.params.items():  # the experiment runs the best trial's
        node = params
        for part in key.split("."):
            node = node[part]
        assert node == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12)), key
    metrics = shown["metrics"]["reports/metrics.json"]["data"]
    ci = metrics["test_ci"]["macro_f1"]
    assert ci["low"] <= metrics["test"]["macro_f1"] <= ci["high"]
    assert "audioclf compare workspace tuned" in out
    runs = mlflow_runs(root)
    trials = [r for r in runs if "optuna_trial" in r["tags"]]
    # the search scored validation only; the experiment's evaluate stage scored the test files
    assert len(trials) == 3 and not [k for r in trials for k in r["metrics"] if "test" in k]
    (applied,) = [r for r in runs if r["name"] == "tuned"]
    assert "test_macro_f1" in applied["metrics"] and "optuna_study" not in applied["tags"]


def test_a_planted_duplicate_stops_the_audit(shared, monkeypatch, capsys):
    """A gain-changed copy of a training clip planted in the test list fails the audit stage."""
    from audioclf.data.manifest import describe, read_manifest, write_manifest

    root, _, _ = shared
    train = read_manifest(root / "data/split/fold_0/train.csv")
    source = train[0]
    audio, sr = sf.read(root / "data/raw" / source.path)
    sf.write(root / "data/raw/planted_copy.wav", audio * 0.5, sr)
    test_list = root / "data/test/fold_0.csv"
    planted = describe(root / "data/raw/planted_copy.wav", root / "data/raw", source.label, "p")
    write_manifest(read_manifest(test_list) + [planted], test_list)
    monkeypatch.chdir(root)
    args = ["--audio-root", "data/raw", "--split", "data/split", "--test", "data/test"]
    with pytest.raises(SystemExit):
        run_main(stage_main("audit"), [*args, "--report", "reports/leakage.json"])
    err = capsys.readouterr().err
    assert "leakage audit failed" in err and "planted_copy.wav" in err and source.path in err
    report = json.loads((root / "reports/leakage.json").read_text())
    assert report["ok"] is False and report["checks"]["near"]["count"] == 1
