"""Sharing data, models and experiments: a DVC remote on a local path and a bare git repository.

``dvc push`` (and ``dvc exp push``) from the working copy, then a fresh ``git clone`` that runs
``dvc pull``: its ``dvc repro`` recomputes nothing, its ``dvc exp show`` matches, and
``dvc exp pull`` brings the shared experiment with its outputs. The feature store is machine-local
(not in the remote): the origin's survives DVC's commit of the hard-linked table, and on the
clone a forced ``features`` run recomputes the table from an empty store byte for byte.
"""

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.conftest import run

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


def test_push_then_pull_into_a_fresh_clone_recomputes_nothing(project, tmp_path):
    root, env = project
    remote, storage = tmp_path / "origin.git", tmp_path / "storage"
    run(["git", "init", "-q", "--bare", str(remote)], tmp_path, env)
    run(["git", "remote", "add", "origin", str(remote)], root, env)
    run(["dvc", "remote", "add", "-d", "storage", str(storage)], root, env)
    run(["dvc", "repro"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "pipeline run, remote"], root, env)
    reports = {
        name: (root / "reports" / name).read_text() for name in ("metrics.json", "train.json")
    }
    run(["dvc", "push"], root, env)  # raw data, split lists, features, models
    run(["git", "push", "-q", "origin", "HEAD:main"], root, env)
    run(["dvc", "exp", "run", "-n", "lr01", "-S", "train.lr=0.01"], root, env)
    run(["dvc", "exp", "push", "origin", "lr01"], root, env)  # its git ref and its outputs
    shown = experiments(root, env)

    # the origin's store survived DVC's commit of the table (its data file a hard link to a shard)
    rerun = logged(["dvc", "repro", "--force", "features"], root, env)
    assert "(0 files computed, " in rerun, rerun

    fresh = tmp_path / "fresh"
    run(["git", "clone", "-q", "-b", "main", str(remote), str(fresh)], tmp_path, env)
    assert not (fresh / "data").exists()
    run(["dvc", "pull"], fresh, env)
    assert (fresh / "models/fold_0/best.pt").is_file() and (fresh / "data/features").is_dir()
    assert not (fresh / "data/resume").exists() and not (fresh / "data/feature_store").exists()
    # only the source stage runs: it looks at data.archive on every run (always changed) and
    # writes what it found; that is what download saw, so nothing downstream reruns
    assert only_source_runs(logged(["dvc", "repro"], fresh, env))
    assert up_to_date(run(["dvc", "status"], fresh, env))
    for name, text in reports.items():
        assert (fresh / "reports" / name).read_text() == text, name

    run(["dvc", "exp", "pull", "origin", "lr01"], fresh, env)  # its ref and its outputs
    assert experiments(fresh, env) == shown and set(shown) == {"baseline", "lr01"}
    run(["dvc", "exp", "apply", "lr01"], fresh, env)
    assert yaml.safe_load((fresh / "params.yaml").read_text())["train"]["lr"] == 0.01
    assert only_source_runs(logged(["dvc", "repro"], fresh, env))

    # the clone's feature store is empty: a forced features run recomputes the table exactly
    run(["git", "checkout", "-q", "--", "."], fresh, env)
    run(["dvc", "checkout", "-q"], fresh, env)
    rebuilt = logged(["dvc", "repro", "--force", "features"], fresh, env)
    assert ", 0 from the store)" in rebuilt, rebuilt
    assert up_to_date(run(["dvc", "status"], fresh, env))  # the same hash as the origin's
