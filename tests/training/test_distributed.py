"""Data-parallel training: the sharded epoch order, the params, and the train stage run by
torchrun with 2 gloo processes on the CPU (it learns, writes one checkpoint and one MLflow run,
resumes a killed run to the uninterrupted result, and two nodes joined by torchrun's static
rendezvous repeat it exactly), and by 1 process exactly as without torchrun."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from tests.conftest import REPO, repo_params, shrink

from audioclf.config import ParamsError, parse_params
from audioclf.config.training import TrainConfig
from audioclf.data.manifest import write_manifest
from audioclf.evaluation.evaluate import evaluate
from audioclf.features.table import FeatureTable
from audioclf.training.data import epoch_order
from audioclf.training.distributed import SINGLE, Ranks, process_group, processes_per_node
from audioclf.training.launch import torchrun_args

STAGE = REPO / "stages" / "train.py"
ARGS = ["--params", "params.yaml", "--features", "features", "--split", "split"] + [
    *("--models", "models", "--resume", "resume", "--curves", "curves", "--summary", "train.json"),
    *("--leakage", "leakage.json"),
]


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("n", [1, 5, 12, 13])
def test_shards_are_equal_disjoint_strides_of_the_padded_order(world, n):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shards = [Ranks(rank, world).shard(order) for rank in range(world)]
    size = -(-n // world)
    assert all(len(s) == size for s in shards)  # every rank takes as many optimizer steps
    padded = torch.stack(shards, dim=1).flatten()  # back in draw order
    assert torch.equal(padded[:n], order)  # nothing dropped, nothing reordered
    assert set(padded[n:].tolist()) <= set(order.tolist())  # the padding repeats the order's start
    assert SINGLE.shard(order) is order


def test_the_class_balanced_order_stays_balanced_on_every_rank():
    y = torch.tensor([0] * 900 + [1] * 100)
    order = epoch_order(y, "balanced", torch.Generator().manual_seed(0))
    for rank in range(2):
        drawn = torch.bincount(y[Ranks(rank, 2).shard(order)], minlength=2)
        assert abs(int(drawn[0]) - int(drawn[1])) < 60, drawn  # ~250/250 despite 900/100


@pytest.mark.parametrize("value", [0, -1, True, "two", 1.5])
def test_train_devices_is_a_positive_integer_or_auto(value):
    raw = shrink(repo_params())
    raw["train"]["devices"] = value
    with pytest.raises(ParamsError, match="train.devices"):
        parse_params(raw)


def test_auto_on_the_cpu_is_one_process_and_nodes_need_a_master_address(monkeypatch):
    assert processes_per_node(TrainConfig(devices="auto", device="cpu")) == 1
    assert processes_per_node(TrainConfig(devices=3, device="cpu")) == 3
    assert torchrun_args(TrainConfig(devices=2, device="cpu")) == [
        "--nnodes=1",
        "--nproc-per-node=2",
        "--standalone",
    ]
    monkeypatch.delenv("PET_MASTER_ADDR", raising=False)
    with pytest.raises(ParamsError, match="PET_MASTER_ADDR"):
        torchrun_args(TrainConfig(devices=2, nodes=2, device="cpu"))
    monkeypatch.setenv("PET_MASTER_ADDR", "10.0.0.1")
    assert torchrun_args(TrainConfig(devices=2, nodes=2, device="cpu"), node_rank=1)[2:] == [
        "--node-rank=1",
        "--master-addr=10.0.0.1",
        "--master-port=29500",
    ]


def test_a_torchrun_world_that_the_params_do_not_ask_for_is_refused(monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ParamsError, match="train.devices=2"):
        with process_group(TrainConfig(devices=1, device="cpu")):
            pass


# the train stage in processes of its own --------------------------------------------------------


def _workdir(path: Path, cache: Path, splits: dict, **train) -> Path:
    """A folder holding what the train stage reads: features, one fold's lists, params."""
    path.mkdir(parents=True)
    (path / "features").symlink_to(cache)
    for name in ("train", "val"):
        write_manifest(splits[name], path / "split" / "fold_0" / f"{name}.csv")
    raw = shrink(repo_params())
    raw["train"].update({"device": "cpu", **train})
    # dropout and SpecAugment draw from each rank's own streams: resuming must restore them all
    raw["augment"]["specaugment"].update(p=0.5, freq_width=4, time_width=4)
    (path / "params.yaml").write_text(yaml.safe_dump(raw))
    (path / "leakage.json").write_text('{"checks": {}}')  # a clean audit
    return path


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_", "PET_"))}
    return {**env, "PYTHONPATH": str(REPO / "src")}


def _train(cwd: Path, nproc: int | None = None) -> subprocess.Popen:
    """The stage as DVC runs it (``nproc`` None: it launches its own workers), or under torchrun."""
    launcher = [] if nproc is None else ["-m", "torch.distributed.run", "--standalone"]
    launcher += [] if nproc is None else [f"--nproc-per-node={nproc}"]
    cmd = [sys.executable, *launcher, str(STAGE), *ARGS]
    return subprocess.Popen(
        cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    return out


def _client(cwd: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")


def _runs(cwd: Path) -> list:
    client = _client(cwd)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _files(cwd: Path) -> list[str]:
    return sorted(
        str(p.relative_to(cwd))
        for d in ("models", "resume")
        for p in (cwd / d).rglob("*")
        if p.is_file()
    )


EPOCHS = dict(epochs=12, patience=12, devices=2)


@pytest.fixture(scope="module")
def two_processes(tiny_cache, tmp_path_factory):
    """The stage as DVC runs it with 2 gloo processes: it replaces itself with torchrun."""
    cache, splits = tiny_cache
    cwd = _workdir(tmp_path_factory.mktemp("ddp") / "stage", cache, splits, **EPOCHS)
    _finish(_train(cwd))
    return cwd, splits


@pytest.mark.slow
def test_two_processes_learn_and_write_one_checkpoint_and_one_run(two_processes):
    cwd, splits = two_processes
    summary = json.loads((cwd / "train.json").read_text())
    table = FeatureTable(cwd / "features")
    chance = 1 / len(table.labels)
    test = evaluate(cwd / "models/fold_0/best.pt", table, [e.path for e in splits["test"]], 64)
    assert test["metrics"]["macro_f1"] > chance + 0.3
    # the checkpoint is the model rank 0 scored: each rank predicted a share with rank 0's BatchNorm
    val = evaluate(cwd / "models/fold_0/best.pt", table, [e.path for e in splits["val"]], 7)
    assert val["metrics"]["macro_f1"] == pytest.approx(summary["best_val_macro_f1"], abs=1e-9)
    assert _files(cwd) == ["models/fold_0/best.pt", "resume/fold_0/last.pt"]
    (run,) = _runs(cwd)
    assert run.info.status == "FINISHED" and run.data.tags["processes"] == "2"
    history = _client(cwd).get_metric_history(run.info.run_id, "val/macro_f1")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS["epochs"] + 1))
    assert run.data.params["train.devices"] == "2"


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(two_processes, tmp_path):
    done, _ = two_processes
    cwd = _workdir(tmp_path / "killed", done / "features", _splits(done), **EPOCHS)
    proc = _train(cwd)
    last = cwd / "resume/fold_0/last.pt"
    deadline = time.time() + 300
    while not last.is_file():  # written atomically after each epoch
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # as DVC stops a stage
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "a rerun resumes" in out, out[-3000:]
    out = _finish(_train(cwd))
    assert "resuming after epoch" in out
    assert (cwd / "curves/fold_0.csv").read_text() == (done / "curves/fold_0.csv").read_text()
    (run,) = _runs(cwd)
    assert run.info.status == "FINISHED" and int(run.data.tags["resumed_from_epoch"]) >= 1


def _splits(cwd: Path) -> dict:
    from audioclf.data.manifest import read_manifest

    return {name: read_manifest(cwd / "split/fold_0" / f"{name}.csv") for name in ("train", "val")}


@pytest.mark.slow
def test_one_process_under_torchrun_trains_as_without_it(tiny_cache, tmp_path):
    cache, splits = tiny_cache
    dirs = [_workdir(tmp_path / n, cache, splits, epochs=2) for n in ("torchrun", "plain")]
    procs = [_train(dirs[0], nproc=1), _train(dirs[1])]
    for proc in procs:
        _finish(proc)
    for name in ("train.json", "curves/fold_0.csv"):
        assert (dirs[0] / name).read_text() == (dirs[1] / name).read_text(), name
    assert [r.data.tags["processes"] for d in dirs for r in _runs(d)] == ["1", "1"]


@pytest.mark.slow
def test_two_nodes_train_as_two_processes_on_one(two_processes, tmp_path):
    """Two "nodes" of one process each on this machine, joined by torchrun's static rendezvous:
    node 0 is the stage (as DVC runs it), node 1 the torchrun command node 0 logs for it."""
    done, _ = two_processes
    settings = {**EPOCHS, "devices": 1, "nodes": 2}
    nodes = [
        _workdir(tmp_path / f"node{k}", done / "features", _splits(done), **settings)
        for k in (0, 1)
    ]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # PET_* variables reach torchrun: the master's address, and a shorter wait for the other node
    env = {**_env(), "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port)}
    env["PET_RDZV_CONF"] = "timeout=300"
    # one thread each, as the two processes on one node had: other thread counts round differently
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, str(STAGE), *ARGS]
    first = subprocess.Popen(
        cmd, cwd=nodes[0], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    logged = []
    while not any("start nodes 1..1" in line for line in logged):
        line = first.stdout.readline()
        assert line, "".join(logged)[-3000:]
        logged.append(line)
    other = shlex.split(logged[-1].split("each): ", 1)[1])
    assert other[0] == "torchrun" and "--node-rank=1" in other
    second = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", *other[1:]],
        cwd=nodes[1],
        env={**_env(), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for proc in (first, second):
        _finish(proc)
    assert (nodes[0] / "curves/fold_0.csv").read_text() == (done / "curves/fold_0.csv").read_text()
    assert _files(nodes[0]) == ["models/fold_0/best.pt", "resume/fold_0/last.pt"]
    written = [p.name for p in nodes[1].iterdir()]
    assert sorted(written) == ["features", "leakage.json", "params.yaml", "split"]  # wrote nothing


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_two_gpus_train_with_nccl_and_mixed_precision(tiny_cache, tmp_path):
    cache, splits = tiny_cache
    cwd = _workdir(tmp_path / "gpus", cache, splits, **{**EPOCHS, "device": "cuda", "amp": "auto"})
    _finish(_train(cwd))
    summary = json.loads((cwd / "train.json").read_text())
    table = FeatureTable(cwd / "features")
    assert summary["best_val_macro_f1"] > 1 / len(table.labels) + 0.3
    assert _files(cwd) == ["models/fold_0/best.pt", "resume/fold_0/last.pt"]
    (run,) = _runs(cwd)
    assert run.data.tags["processes"] == "2" and run.data.tags["device"] == "cuda"
