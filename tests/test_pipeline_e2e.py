"""End to end through DVC and MLflow on a copy of the repo with shrunk params.

Runs ``dvc repro``, ``dvc exp run -S model=cnn_v2`` and a *queued* experiment (which
executes in a temporary copy under .dvc/tmp/exps and must still log to the repo's
MLflow store), then checks ``dvc exp show --json`` and the MLflow runs.
"""

import json
import subprocess

import pytest
from tests.conftest import mlflow_runs, registered_versions, run

pytestmark = pytest.mark.slow


def test_repro_experiments_and_tracking(project):
    root, env = project
    run(["dvc", "repro"], root, env)
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert set(metrics["test"]) >= {"accuracy", "macro_f1", "weighted_f1", "macro_map"}
    assert (root / "reports/confusion_matrix.png").stat().st_size > 1000
    # the per-file probabilities give back every test metric exactly (what comparisons rely on)
    from audioclf.evaluation.metrics import headline
    from audioclf.evaluation.predictions import parse_probabilities

    written = parse_probabilities((root / "reports/probabilities.csv").read_text(), "probs")
    assert len(written.paths) == metrics["n"]
    again = headline(written.y_true, written.probs)
    for key, value in metrics["test"].items():
        assert again[key] == pytest.approx(value, abs=1e-12), key
    first = (root / "reports/metrics.json").read_text()
    exported = json.loads((root / "exported/model.json").read_text())  # the export stage ran
    assert (root / "exported/model.onnx").stat().st_size > 10_000
    assert exported["parity"]["top1_identical"] and exported["parity"]["max_abs_logit_diff"] <= 1e-4
    assert "up to date" in run(["dvc", "status", "export"], root, env)  # in step with dvc repro
    predicted = root / "predictions"
    run(["python", "-m", "audioclf", "predict", "data/raw", "--out", str(predicted)], root, env)
    assert (predicted / "windows.csv").read_text().count("\n") > 10

    run(["dvc", "repro", "--force", "train", "evaluate"], root, env)
    assert (root / "reports/metrics.json").read_text() == first, (
        "same seed must give identical metrics"
    )

    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "baseline"], root, env)
    run(["dvc", "exp", "run", "-S", "model=cnn_v2", "-n", "v2"], root, env)
    run(
        ["dvc", "exp", "run", "-S", "split.strategy=kfold", "-S", "split.k=3", "-n", "cv3"],
        root,
        env,
    )
    run(["dvc", "exp", "run", "--queue", "-S", "train.lr=0.01", "-n", "queued-lr"], root, env)
    run(["dvc", "queue", "start"], root, env)
    run(["dvc", "queue", "status"], root, env)
    shown = run(["dvc", "exp", "show", "--json"], root, env)
    # wait for the queue worker: exp show lists the queued run once it finished
    import time

    deadline = time.time() + 300
    while '"queued-lr"' not in shown or '"Running"' in shown or '"Queued"' in shown:
        assert time.time() < deadline, "queued experiment did not finish in 5 minutes"
        time.sleep(3)
        shown = run(["dvc", "exp", "show", "--json"], root, env)
    exps = {}
    for commit in json.loads(shown):
        for exp in [commit] + [
            e for ex in commit.get("experiments") or [] for e in ex.get("revs", [])
        ]:
            data = exp.get("data") or {}
            name = exp.get("name") or data.get("name") or exp.get("rev")
            exps[name] = data
    for name in ("v2", "queued-lr"):
        data = exps[name]
        test_metrics = data["metrics"]["reports/metrics.json"]["data"]["test"]
        assert 0 <= test_metrics["macro_f1"] <= 1, name
    assert exps["v2"]["params"]["params.yaml"]["data"]["model"] == "cnn_v2"
    cv = exps["cv3"]["metrics"]["reports/metrics.json"]["data"]
    assert set(cv["folds"]) == {"0", "1", "2"} and set(cv["test_std"]) == set(cv["test"])
    assert cv["test"]["macro_f1"] == pytest.approx(
        sum(f["macro_f1"] for f in cv["folds"].values()) / 3, abs=1e-4
    )
    ci = cv["test_ci"]["macro_f1"]  # shown by dvc exp show: a mapping, not a list
    assert ci["low"] <= cv["test_pooled"]["macro_f1"] <= ci["high"]

    runs = mlflow_runs(root)
    finished = [r for r in runs if r["status"] == "FINISHED" and "test_macro_f1" in r["metrics"]]
    names = {r["tags"].get("dvc_exp_name") for r in finished}
    assert {"v2", "queued-lr"} <= names, names
    assert len(finished) >= 4  # repro, forced repro, v2, queued
    v2 = next(r for r in finished if r["tags"].get("dvc_exp_name") == "v2")
    assert {"checkpoints", "plots", "evaluation"} <= set(v2["artifacts"])
    assert v2["tags"]["git_commit"] != "unknown"
    assert not list((root / ".dvc/tmp").rglob("mlflow.db")), (
        "a queued run wrote its own MLflow store"
    )
    versions = registered_versions(root)
    trainings = [r for r in finished if "mlflow.parentRunId" not in r["tags"]]
    assert len(versions) == len(trainings) and {"v2", "queued-lr"} <= {
        v["tags"]["dvc_exp_name"] for v in versions
    }
    assert all(float(v["tags"]["test_macro_f1"]) >= 0 for v in versions)
    cv_runs = [r for r in runs if r["tags"].get("dvc_exp_name") == "cv3"]
    parent = [r for r in cv_runs if "mlflow.parentRunId" not in r["tags"]]
    children = [r for r in cv_runs if "mlflow.parentRunId" in r["tags"]]
    assert len(parent) == 1 and len(children) == 3
    assert {"test_macro_f1", "test_macro_f1_std", "test_macro_f1_ci_low"} <= set(
        parent[0]["metrics"]
    )
    assert all("test_macro_f1" in c["metrics"] and "val_macro_f1" in c["metrics"] for c in children)


def test_planted_duplicate_fails_the_pipeline(project):
    """A gain-changed copy of a training clip planted in the test list stops dvc repro at the audit."""
    root, env = project
    run(["dvc", "repro", "split"], root, env)
    import soundfile as sf

    from audioclf.data.manifest import describe, read_manifest, write_manifest

    train = read_manifest(root / "data/split/fold_0/train.csv")
    source = train[0]
    audio, sr = sf.read(root / "data/raw" / source.path)
    sf.write(root / "data/raw/planted_copy.wav", audio * 0.5, sr)
    test_list = root / "data/test/fold_0.csv"
    write_manifest(
        read_manifest(test_list)
        + [
            describe(root / "data/raw/planted_copy.wav", root / "data/raw", source.label, "planted")
        ],
        test_list,
    )
    out = subprocess.run(
        [
            "python",
            "stages/audit.py",
            "--audio-root",
            "data/raw",
            "--split",
            "data/split",
            "--test",
            "data/test",
            "--report",
            "reports/leakage.json",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert (
        "leakage audit failed" in out.stderr
        and "planted_copy.wav" in out.stderr
        and source.path in out.stderr
    )
    report = json.loads((root / "reports/leakage.json").read_text())
    assert report["ok"] is False and report["checks"]["near"]["count"] == 1
