"""One run read back: its files through DVC by name, its MLflow run and per-epoch history."""

from types import SimpleNamespace

import numpy as np
import pytest
from tests.experiments.conftest import LABELS

from audioclf.errors import MissingInputError
from audioclf.experiments.runs import RunFiles, find_run, history, load_record


def test_files_are_read_from_each_revision_and_the_working_tree(repo):
    root, probs, y, paths = repo
    for name in ("a", "b", "workspace"):
        run = RunFiles(name, root).predictions()
        assert np.array_equal(run.probs, probs[name]), name
        assert run.paths == tuple(paths) and np.array_equal(run.y_true, y)
    counts = RunFiles("a", root).train_counts()
    assert counts == {"s0": 10.0, "s1": 20.0, "s2": 30.0, "s3": 40.0}
    assert RunFiles("a", root).bucket_of(tuple(LABELS)).tolist() == ["mid", "head", "head", "head"]


def test_a_missing_run_or_file_says_which_and_what_to_do(repo):
    root = repo[0]
    with pytest.raises(MissingInputError, match="no experiment, branch or commit named 'nope'"):
        RunFiles("nope", root).predictions()
    with pytest.raises(MissingInputError, match=r"a: no reports/train.json \(run the pipeline"):
        RunFiles("a", root).json("reports/train.json")


def _run(run_id, tags, metrics):
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id), data=SimpleNamespace(tags=tags, metrics=metrics)
    )


class FakeClient:
    """The three ``MlflowClient`` calls :func:`find_run` and :func:`history` make; ``runs`` are
    the experiment's finished runs tagged with the name, latest first, as MLflow orders them."""

    def __init__(self, runs, children=(), histories=None):
        self.runs, self.children, self.histories = runs, list(children), histories or {}

    def get_experiment_by_name(self, name):
        return SimpleNamespace(experiment_id="1") if name == "audioclf-synthetic" else None

    def search_runs(self, ids, filter_string, order_by=None):
        if "parentRunId" in filter_string:
            return [c for c in self.children if c.data.tags["mlflow.parentRunId"] in filter_string]
        return self.runs if "dvc_exp_name = 'exp'" in filter_string else []

    def get_metric_history(self, run_id, key):
        return self.histories.get((run_id, key), [])


def test_the_run_is_the_latest_whose_test_metrics_are_the_files():
    test = {"accuracy": 0.5, "macro_f1": 0.4, "n": 3}
    client = FakeClient(
        [
            _run("newer-other-training", {}, {"test_accuracy": 0.6, "test_macro_f1": 0.4}),
            _run(
                "a-child", {"mlflow.parentRunId": "x"}, {"test_accuracy": 0.5, "test_macro_f1": 0.4}
            ),
            _run(
                "mine",
                {"git_commit": "abc"},
                {"test_accuracy": 0.5, "test_macro_f1": 0.4, "test_n": 3},
            ),
            _run("older-same", {}, {"test_accuracy": 0.5, "test_macro_f1": 0.4, "test_n": 3}),
        ]
    )
    found = find_run(client, "audioclf-synthetic", "exp", test)
    assert (found.run_id, found.folds, found.tags) == ("mine", {0: "mine"}, {"git_commit": "abc"})
    assert find_run(client, "audioclf-synthetic", "other", test) is None
    assert find_run(client, "audioclf-nope", "exp", test) is None
    assert find_run(client, "audioclf-synthetic", "exp'; drop", test) is None  # not quotable
    assert find_run(client, "audioclf-synthetic", "exp", {"accuracy": 0.9}) is None
    client.children = [
        _run(f"fold{i}", {"mlflow.parentRunId": "mine", "fold": str(i)}, {}) for i in (0, 1)
    ]
    assert find_run(client, "audioclf-synthetic", "exp", test).folds == {0: "fold0", 1: "fold1"}


def test_history_is_one_row_per_epoch_the_last_value_of_a_step_counting():
    m = lambda step, value, t: SimpleNamespace(step=step, value=value, timestamp=t)  # noqa: E731
    client = FakeClient(
        [],
        histories={
            ("r", "train/loss"): [m(2, 0.5, 3), m(1, 0.9, 1), m(2, 0.4, 4), m(0, 9.9, 0)],
            ("r", "val_loss"): [m(1, 1.0, 2)],  # a run logged before the split prefixes
        },
    )
    assert history(client, "r") == [
        {"epoch": 1, "train_loss": 0.9, "val_loss": 1.0},
        {"epoch": 2, "train_loss": 0.4},
    ]


def test_without_an_mlflow_run_the_epochs_come_from_the_curves(tmp_path):
    from tests.experiments.conftest import git

    git(tmp_path, "init", "-q")
    (tmp_path / "reports/curves").mkdir(parents=True)
    (tmp_path / "params.yaml").write_text("dataset: synthetic\n")
    for name, text in {
        "metrics.json": '{"test": {"accuracy": 0.5}}',
        "train.json": '{"best_epoch": 1}',
        "per_class.json": "{}",
        "split.json": '{"folds": [{"per_class": {"x": {"train": 2}}}]}',
        "curves/fold_0.csv": "epoch,train_loss\n1,0.5\n2,0.25\n",
    }.items():
        (tmp_path / "reports" / name).write_text(text)
    record = load_record(RunFiles("workspace", tmp_path), FakeClient([]))
    assert record.tracked is None and record.histories == {
        0: [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}]
    }
    assert record.history_source.startswith("`reports/curves/` (no MLflow run")
    (tmp_path / "reports/curves/fold_0.csv").write_text("epoch,train_loss\n1,high\n")
    with pytest.raises(MissingInputError, match="fold_0.csv is not numeric"):
        load_record(RunFiles("workspace", tmp_path), FakeClient([]))
