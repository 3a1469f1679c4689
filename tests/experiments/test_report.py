"""``audioclf report``: every number in it is the record's, read back from the markdown."""

import copy
import json
import re

import numpy as np
import pytest
from tests.conftest import repo_params

from audioclf.evaluation.paired import compare_runs
from audioclf.evaluation.predictions import FilePredictions
from audioclf.experiments.compare import METRICS, headline_key
from audioclf.experiments.report import (
    TargetError,
    document,
    parse_target,
    target_value,
    write_figures,
    write_report,
)
from audioclf.experiments.runs import RunFiles, RunRecord

HISTORY = [
    {
        "epoch": e,
        "train_loss": 2.0 / e,
        "val_loss": 2.2 / e + 0.05 * e,
        "train_accuracy": 0.3 + 0.1 * e,
        "val_accuracy": 0.35 + 0.05 * e - (0.08 if e == 4 else 0),
        "train_macro_f1": 0.2 + 0.1 * e,
        "val_macro_f1": [0.3, 0.52, 0.61, 0.55][e - 1],
        "lr": 0.001 / e,
    }
    for e in range(1, 5)
]
TEST = {
    "accuracy": 0.8082,
    "balanced_accuracy": 0.6813,
    "macro_f1": 0.6500,
    "weighted_f1": 0.7749,
    "macro_map": 0.7977,
    "macro_auc": 0.9824,
    "top5_accuracy": 0.9178,
    "ece": 0.0440,
}


def _record(**changes) -> RunRecord:
    params = repo_params()
    ci = {k: {"low": v - 0.05, "high": min(1.0, v + 0.04)} for k, v in TEST.items()}
    ci["tail_macro_f1"] = {"low": 0.39, "high": 0.72}
    metrics = {
        "test": dict(TEST),
        "test_ci": ci,
        "n": 146,
        "buckets": {"head": {"macro_f1": 0.914}, "tail": {"macro_f1": 0.55}},
    }
    per_class = {
        "owl": {"f1": 0.9, "precision": 0.95, "recall": 0.86, "support": 7},
        "wren": {"f1": 0.2, "precision": 0.25, "recall": 0.17, "support": 6},
        "kite": {"f1": 0.6, "precision": 0.5, "recall": 0.75, "support": 4},
        "gone": {"f1": 0.0, "precision": 0.0, "recall": 0.0, "support": 0},  # no test files
    }
    record = RunRecord(
        name="cnn-run",
        params=params,
        metrics=metrics,
        train={"best_epoch": 3, "best_val_macro_f1": 0.61, "n_parameters": 341176},
        per_class=per_class,
        train_counts={"owl": 140.0, "wren": 3.0, "kite": 12.0, "gone": 1.0},
        histories={0: HISTORY},
        history_source="MLflow run `abc`",
    )
    for k, v in changes.items():
        setattr(record, k, v)
    return record


def _rows(text: str, heading: str) -> list[list[str]]:
    """The first table after ``heading``: its rows (header excluded) as cells."""
    part = text.split(heading, 1)[1]
    lines = []
    for line in part.splitlines()[1:]:
        if line.startswith("|"):
            lines.append([c.strip() for c in line.strip("|").split("|")])
        elif lines:
            break
    return lines[2:]


def _preds(accuracy, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(120) % 3
    probs = rng.dirichlet(np.ones(3), 120).astype(np.float32)
    top = np.where(rng.random(120) < accuracy, y, (y + 1) % 3)
    probs[np.arange(120), top] += 1
    probs /= probs.sum(axis=1, keepdims=True)
    return FilePredictions(tuple(map(str, range(120))), np.zeros(120), y, probs, ("a", "b", "c"))


def _document(**kw):
    previous = _record(name="prev")
    previous.params = copy.deepcopy(previous.params)
    previous.params["model"] = "cnn_v2"
    previous.params["train"]["lr"] = 0.003
    comparison = compare_runs(_preds(0.5, 1), _preds(0.9, 2), n_boot=200)
    args = {
        "previous": previous,
        "against": [("prev", comparison)],
        "targets": [parse_target("test.macro_f1=0.6"), parse_target("test.ece<=0.01")],
        "figures": {"progression_0": "r_files/progression_fold_0.png"},
        "command_line": "audioclf report cnn-run",
    }
    args.update(kw)
    return document(_record(), **args), comparison


def test_progression_table_is_the_history_with_the_best_epoch_marked():
    text, _ = _document()
    rows = _rows(text, "## Training progression")
    assert len(rows) == len(HISTORY)
    for row, h in zip(rows, HISTORY, strict=True):
        cells = [c.strip("*") for c in row]
        assert cells[0].split()[0] == str(h["epoch"])
        assert cells[1:7] == [
            f"{h['train_loss']:.4f}",
            f"{h['val_loss']:.4f}",
            f"{100 * h['train_accuracy']:.1f}",
            f"{100 * h['val_accuracy']:.1f}",
            f"{100 * h['train_macro_f1']:.1f}",
            f"{100 * h['val_macro_f1']:.1f}",
        ]
        assert float(cells[7]) == pytest.approx(h["lr"], rel=1e-2)
        assert row[0].startswith("**") == (h["epoch"] == 3)
    assert rows[2][0] == "**3 (best)**"
    assert "Best epoch 3 of 4 (train.epochs 30; stopped early after epoch 4)" in text
    assert "validation macro-F1 61.0" in text and "from MLflow run `abc`" in text
    assert "![training progression, fold 0](r_files/progression_fold_0.png)" in text


def test_train_validation_and_test_come_from_the_best_epoch_and_metrics_file():
    text, _ = _document()
    rows = _rows(text, "## Train, validation and test")
    best = HISTORY[2]
    assert rows[0] == [
        "train (epoch 3)",
        f"{best['train_loss']:.4f}",
        f"{100 * best['train_accuracy']:.1f}",
        f"{100 * best['train_macro_f1']:.1f}",
    ]
    assert (
        rows[1][0] == "validation (epoch 3)" and rows[1][2] == f"{100 * best['val_accuracy']:.1f}"
    )
    assert rows[2] == ["test", "–", "80.8 [75.8, 84.8]", "65.0 [60.0, 69.0]"]
    metrics = {r[0]: r[1:] for r in _rows(text, "bootstrap interval (`test_ci`")}
    record = _record()
    for column, path in METRICS:
        node = record.metrics
        for key in path:
            node = (node or {}).get(key)
        if node is None:
            assert column not in metrics  # mid F1: no value, no row
            continue
        ci = record.metrics["test_ci"].get(headline_key(path), {})
        assert metrics[column][0] == f"{100 * node:.1f}", column
        if ci:
            assert metrics[column][1] == f"[{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]"


def test_overfitting_gap_rows():
    text, _ = _document()
    rows = {r[0]: r[1:] for r in _rows(text, "## Overfitting gap")}
    for label, h in (
        ("best (3)", HISTORY[2]),
        ("last (4)", HISTORY[3]),
        ("largest (4)", HISTORY[3]),
    ):
        assert rows[label][:3] == [
            f"{100 * h['train_accuracy']:.1f}",
            f"{100 * h['val_accuracy']:.1f}",
            f"{100 * (h['train_accuracy'] - h['val_accuracy']):+.1f}",
        ]
        assert rows[label][5] == f"{h['val_loss'] - h['train_loss']:+.4f}"


def test_classes_with_their_training_counts():
    text, _ = _document()
    strongest = _rows(text, "Strongest:")
    assert [r[0] for r in strongest] == ["owl"]  # at most half the 3 classes with test files
    assert strongest[0] == ["owl", "140", "7", "95.0", "86.0", "90.0"]
    assert [r[0] for r in _rows(text, "Weakest:")] == ["wren"]
    every = _rows(text, "<details>")
    assert [r[0] for r in every] == ["owl", "kite", "wren"] and every[2][1] == "3"


def test_configuration_and_what_changed():
    text, _ = _document()
    config = dict((r[0], r[1]) for r in _rows(text, "## Configuration"))
    assert config["model"].startswith("`cnn`: channels [32, 64, 128, 192]")
    assert config["model"].endswith("341,176 parameters")
    assert config["seeds"] == "seed 42 (data, split); train.seed null (follows seed: 42)"
    assert config["dataset"] == "`synthetic`, 146 test files"
    changed = {r[0]: r[1:] for r in _rows(text, "### Changed from `prev`")}
    assert changed["`model`"] == ["cnn_v2", "cnn"] and changed["`train.lr`"] == ["0.003", "0.001"]
    assert "`model_params.cnn.hidden`" in changed and "`model_params.vit.dim`" not in changed
    same, _ = _document(previous=_record(name="twin"))
    assert "Nothing: the params equal `twin`'s." in same


def test_comparison_and_success_criteria():
    text, comparison = _document()
    summary = _rows(text, "## Comparison")[0]
    acc = comparison.differences["accuracy"]
    cell = f"{100 * acc.diff:+.1f} [{100 * acc.low:+.1f}, {100 * acc.high:+.1f}]"
    assert summary[:3] == ["`prev`", "same", f"**{cell}**"]
    m = comparison.mcnemar
    assert summary[-1] == f"{m.only_a} / {m.only_b}, p = {m.p:.3g}"
    criteria = _rows(text, "## Success criteria")
    assert criteria[0] == ["`test.macro_f1` ≥ 0.6", "0.6500", "met"]
    assert criteria[1] == ["`test.ece` ≤ 0.01", "0.0440", "**missed**"]
    assert "1 of 2 criteria met." in text


def test_targets():
    record = _record()
    assert parse_target("test.ece=0.05").op == "<=" and parse_target("val.loss=1").op == "<="
    assert parse_target("buckets.tail.macro_f1>=0.3").op == ">="
    assert target_value(record, "val.accuracy") == HISTORY[2]["val_accuracy"]
    assert target_value(record, "test_ci.macro_f1.low") == pytest.approx(0.60)
    assert target_value(record, "buckets.tail.macro_f1") == 0.55
    with pytest.raises(TargetError, match="expected KEY=NUMBER"):
        parse_target("test.macro_f1>high")
    with pytest.raises(TargetError, match="cnn-run has no number of that name"):
        target_value(record, "test.nope")


def test_cross_validation_reports_every_fold():
    record = _record(
        train={
            "n_parameters": 5,
            "folds": {
                "0": {"best_epoch": 3, "best_val_macro_f1": 0.61},
                "1": {"best_epoch": 2, "best_val_macro_f1": 0.52},
            },
        },
        histories={0: HISTORY, 1: HISTORY[:3]},
    )
    text = document(record, previous=None, against=[], targets=[], figures={}, command_line="x")
    assert "### Fold 0" in text and "### Fold 1" in text
    assert "| validation (epoch 2, fold 1) |" in text
    assert re.search(r"\| \*\*2 \(best\)\*\* \|", text)
    assert target_value(record, "val.macro_f1") == pytest.approx((0.61 + 0.52) / 2)


def test_report_figures_are_copied_from_a_revision_and_linked_in_the_workspace(repo, tmp_path):
    from tests.experiments.conftest import git

    root = repo[0]
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    (root / "reports/confusion_matrix.png").write_bytes(png)
    git(root, "add", "reports/confusion_matrix.png")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "figure")
    git(root, "tag", "with-figure")
    record = RunRecord("x", {}, {}, {"best_epoch": 1}, {}, {})
    out = tmp_path / "out" / "r.md"
    out.parent.mkdir()
    copied = write_figures(RunFiles("with-figure", root), record, out.with_name("r_files"), out)
    assert copied == {"confusion_matrix": "r_files/confusion_matrix.png"}
    assert (tmp_path / "out/r_files/confusion_matrix.png").read_bytes() == png
    report = root / "reports" / "r.md"
    linked = write_figures(RunFiles("workspace", root), record, root / "reports/r_files", report)
    assert linked == {"confusion_matrix": "confusion_matrix.png"}  # the workspace's own file
    assert not (root / "reports/r_files/confusion_matrix.png").exists()


def test_the_command_writes_the_report_of_a_run_and_its_progression_figure(repo, tmp_path):
    """The workspace run of ``repo`` with its reports and no MLflow run, against a revision."""
    from tests.experiments.conftest import git
    from tests.experiments.test_runs import FakeClient

    root = repo[0]
    files = {
        "metrics.json": {"test": {"accuracy": 0.9}, "n": 160},
        "train.json": {"best_epoch": 2, "best_val_macro_f1": 0.5},
        "per_class.json": {"s0": {"f1": 0.9, "support": 40}, "s1": {"f1": 0.1, "support": 40}},
    }
    for name, content in files.items():
        (root / "reports" / name).write_text(json.dumps(content))
    (root / "reports/curves").mkdir(exist_ok=True)
    (root / "reports/curves/fold_0.csv").write_text(
        "epoch,train_loss,val_loss,train_accuracy,val_accuracy\n1,1.0,1.1,0.5,0.4\n2,0.5,0.9,0.7,0.6\n"
    )
    git(root, "add", *(f"reports/{name}" for name in files), "reports/curves")
    git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "reports")
    git(root, "tag", "full")  # b's predictions with these reports
    out = write_report(
        "workspace",
        root=root,
        client=FakeClient([]),
        against=["full"],
        targets=[parse_target("val.accuracy=0.5")],
        out=tmp_path / "r.md",
        command_line="audioclf report workspace",
    )
    text = (tmp_path / "r.md").read_text()
    assert text == out["text"] and text.startswith("# `workspace`: cnn + ce")
    assert (
        "from `reports/curves/` (no MLflow run" in text
        and "Nothing: the params equal `full`'s." in text
    )
    assert "| `val.accuracy` ≥ 0.5 | 0.6000 | met |" in text
    assert "### Against `full`" in text and "Paired on the same 160 test files" in text
    assert (tmp_path / "r_files/progression_fold_0.png").read_bytes()[:4] == b"\x89PNG"
    assert "![training progression, fold 0](r_files/progression_fold_0.png)" in text
    with pytest.raises(TargetError, match="workspace has no number of that name"):
        write_report(
            "workspace",
            root=root,
            client=FakeClient([]),
            against=[],
            targets=[parse_target("test.nope=1")],
            out=tmp_path / "bad.md",
            command_line="x",
        )
    assert not (tmp_path / "bad.md").exists()
