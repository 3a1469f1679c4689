"""Runs read back through DVC by name, and compared: ``audioclf compare`` and the ladder's pairing.

A small git + DVC repository holds two committed runs (tags ``a`` and ``b``: hand-made
predictions, ``b`` planted clearly better) and a third, uncommitted, in the workspace.
"""

import json
import re
import subprocess

import numpy as np
import pytest
import yaml
from tests.conftest import repo_params

from audioclf.errors import MissingInputError
from audioclf.evaluation.metrics import headline
from audioclf.evaluation.paired import compare_runs
from audioclf.evaluation.predictions import write_probabilities
from audioclf.experiments import compare as compare_cmd
from audioclf.experiments.phase_pairs import compare_with_baseline
from audioclf.experiments.phase_report import PhaseResult, comparison_rows
from audioclf.experiments.runs import RunFiles

LABELS = ["s0", "s1", "s2", "s3"]


def _probs(n: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(LABELS)
    probs = rng.dirichlet(np.ones(len(LABELS)), n).astype(np.float32)
    right = rng.random(n) < accuracy
    top = np.where(right, y, (y + 1) % len(LABELS))
    probs[np.arange(n), top] += 1.0
    return y, (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def _write_run(root, y, probs, paths):
    rows = [{"fold": 0, "path": p, "actual": LABELS[t]} for p, t in zip(paths, y, strict=True)]
    write_probabilities(root / "reports/probabilities.csv", rows, probs, LABELS)
    counts = {lab: {"train": 10 * (i + 1), "val": 2, "test": 3} for i, lab in enumerate(LABELS)}
    (root / "reports/split.json").write_text(json.dumps({"folds": [{"per_class": counts}]}))


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@t")
    _git(root, "config", "user.name", "t")
    subprocess.run(["dvc", "init", "-q"], cwd=root, check=True)
    raw = repo_params()
    raw["evaluate"]["bootstrap"] = 300
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    (root / "reports").mkdir()
    paths = [f"audio/f{i}.wav" for i in range(160)]
    y, pa = _probs(160, 0.55, seed=1)
    pb = pa.copy()
    wrong = np.flatnonzero(pa.argmax(axis=1) != y)[:40]
    pb[wrong, y[wrong]] += 2.0  # b: forty of a's mistakes put right
    pb /= pb.sum(axis=1, keepdims=True)
    for tag, probs in (("a", pa), ("b", pb)):
        _write_run(root, y, probs, paths)
        _git(root, "add", "-A")
        _git(root, "commit", "-qm", tag)
        _git(root, "tag", tag)
    _, pw = _probs(160, 0.9, seed=2)
    _write_run(root, y, pw, paths)  # the workspace: uncommitted
    return root, {"a": pa, "b": pb, "workspace": pw}, y, paths


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


def _table(text: str) -> dict[str, list[str]]:
    return {
        line.split(" | ")[0][2:]: [c.strip(" |") for c in line.split(" | ")[1:]]
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| metric")
    }


def test_compare_prints_every_number_from_the_runs(repo, tmp_path):
    root, probs, y, _ = repo
    out = compare_cmd.main(["a", "b", "--repo", str(root), "--out", str(tmp_path / "c.md")])
    text = (tmp_path / "c.md").read_text()
    assert text == out["text"] and "Paired on the same 160 test files" in text
    rows = _table(text)
    for column, key in (("accuracy", "accuracy"), ("macro-F1", "macro_f1"), ("mAP", "macro_map")):
        a, b = headline(y, probs["a"])[key], headline(y, probs["b"])[key]
        assert rows[column][0] == f"{100 * a:.1f}" and rows[column][1] == f"{100 * b:.1f}"
        d = out["comparison"].differences[key]
        assert (
            rows[column][2] == f"**{100 * d.diff:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]**"
        )
        assert d.diff == pytest.approx(b - a, abs=1e-12) and d.low > 0
    assert out["comparison"].mcnemar.only_a == 0 and out["comparison"].mcnemar.only_b == 40
    assert re.search(r"right\): 0 / 40, p = \d\.\d+e-\d+", text)
    assert "Significant: accuracy, UAR, macro-F1" in text
    direct = compare_runs(
        RunFiles("a", root).predictions(),
        RunFiles("b", root).predictions(),
        n_boot=300,
        level=0.95,
        seed=42,
        bucket_of_a=RunFiles("a", root).bucket_of(tuple(LABELS)),
        bucket_of_b=RunFiles("b", root).bucket_of(tuple(LABELS)),
    )
    assert direct == out["comparison"]  # the command's defaults: A's evaluate params and seed


def test_a_run_against_itself_is_zero_and_not_significant(repo):
    root = repo[0]
    out = compare_cmd.main(["b", "b", "--repo", str(root)])
    for d in out["comparison"].differences.values():
        assert (d.diff, d.low, d.high) == (0.0, 0.0, 0.0)
    assert "Significant: none." in out["text"] and "0 / 0, p = 1" in out["text"]
    assert all(r[2] == "+0.0 [+0.0, +0.0]" for r in _table(out["text"]).values() if len(r) == 3)


def test_bad_options_stop_before_reading(repo):
    with pytest.raises(SystemExit):
        compare_cmd.main(["a", "b", "--repo", str(repo[0]), "--level", "1.5"])


def test_the_ladder_pairs_each_phase_with_the_baseline_run_of_its_seed(repo):
    root = repo[0]
    base = PhaseResult("base", "Base", "ran", experiments=["base-s1", "base-s2"])
    phase = PhaseResult("up", "Up", "ran", experiments=["up-s1", "up-s2"])
    seeds = {"base": {"base-s1": 1, "base-s2": 2}, "up": {"up-s1": 1, "up-s2": 2}}
    revs = {"base-s1": "a", "base-s2": "a", "up-s1": "b", "up-s2": "workspace"}
    raw = yaml.safe_load((root / "params.yaml").read_text())
    cfg = compare_with_baseline([base, phase], seeds, revs, raw, root, baseline="base")
    assert cfg.bootstrap == 300 and base.comparison is None
    c = phase.comparison
    assert c.pairs == [("base-s1", "up-s1"), ("base-s2", "up-s2")] and c.paired
    files = {n: RunFiles(n, root).predictions() for n in ("a", "b", "workspace")}
    for comparison, name in zip(c.per_run, ("b", "workspace"), strict=True):
        d = comparison.differences["accuracy"]
        assert d.diff == pytest.approx(
            headline(files[name].y_true, files[name].probs)["accuracy"]
            - headline(files["a"].y_true, files["a"].probs)["accuracy"]
        )
    mean = np.mean([comp.differences["macro_f1"].diff for comp in c.per_run])
    assert c.combined["macro_f1"].diff == pytest.approx(mean)
    row = next(line for line in comparison_rows([base, phase]) if "`up`" in line)
    assert row.startswith("| Up (`up`) | 2 | ") and "p = " in row


def test_report_figures_are_copied_from_a_revision_and_linked_in_the_workspace(repo, tmp_path):
    from audioclf.experiments.report import write_figures
    from audioclf.experiments.report_sections import RunRecord

    root = repo[0]
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    (root / "reports/confusion_matrix.png").write_bytes(png)
    _git(root, "add", "reports/confusion_matrix.png")
    _git(root, "commit", "-qm", "figure")
    _git(root, "tag", "with-figure")
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
