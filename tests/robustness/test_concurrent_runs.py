"""Experiments that start together on a fresh repository (``dvc queue start -j 2``): the first
ones create the MLflow store at once, and every run must still be recorded."""

import multiprocessing
from pathlib import Path

import mlflow
import pytest

from audioclf.tracking import resolve_store, start_run

PROCESSES = 4


def _one_run(root: str, name: str) -> None:
    store = resolve_store(Path(root), environ={})
    with start_run(store, "synthetic", run_name=name):
        mlflow.log_metric("x", 1.0)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork (POSIX)"
)
def test_runs_that_start_together_on_a_fresh_store_are_all_recorded(tmp_path):
    # forked from this process, which has MLflow imported already: the children reach the store
    # within milliseconds of each other, as they would after their imports in separate processes
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_one_run, args=(str(tmp_path), f"run{i}")) for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert not (tmp_path / "mlruns").exists() and (tmp_path / "mlflow.db").is_file()
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    client = resolve_store(tmp_path, environ={}).client()
    experiments = client.search_experiments()
    assert [e.name for e in experiments if e.name != "Default"] == ["audioclf-synthetic"]
    runs = client.search_runs([e.experiment_id for e in experiments])
    assert sorted(r.info.run_name for r in runs) == [f"run{i}" for i in range(PROCESSES)]
    assert all(r.info.status == "FINISHED" for r in runs)
