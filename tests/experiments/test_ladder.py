"""The phase ladder: the phases checked, planned, run through a stand-in for DVC's queue, read
back, compared with the baseline and written as phases.md; ``audioclf repeat`` and ``show``."""

import json
import re

import numpy as np
import pytest
import yaml
from tests.conftest import repo_params

from audioclf.evaluation.metrics import headline
from audioclf.experiments import ladder, repeat, show
from audioclf.experiments.ladder import (
    PHASES,
    REFERENCE_FEATURES,
    TRANSDUCTIVE_NOTE,
    Dvc,
    DvcError,
    Phase,
    PhaseResult,
    apply_overrides,
    check_phase,
    collect,
    compare_with_baseline,
    comparison_rows,
    metrics_table,
    parse_override,
    plan,
    pretrained_problem,
    run_phases,
    summarise,
)
from audioclf.experiments.runs import RunFiles
from audioclf.features.birdnet import missing as birdnet_missing
from audioclf.features.opensmile import missing as opensmile_missing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train.lr=0.003", ("train.lr", 0.003)),
        ("split.leaky=true", ("split.leaky", True)),
        ("model_params.cnn.channels=[8, 16]", ("model_params.cnn.channels", [8, 16])),
        ("params.yaml:model=cnn_v2", ("model", "cnn_v2")),
        ("data.archive=null", ("data.archive", None)),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_overrides_name_only_params_yaml_keys_that_exist():
    with pytest.raises(ValueError, match="only params.yaml keys"):
        parse_override("other.yaml:x=1")
    with pytest.raises(ValueError, match="is not key=value"):
        parse_override("model")
    raw = repo_params()
    out = apply_overrides(raw, ["train.epochs=2", "model=cnn_v2"])
    assert out["train"]["epochs"] == 2 and out["model"] == "cnn_v2" and raw["train"]["epochs"] != 2
    with pytest.raises(ValueError, match="params.yaml has no key 'train.epoch'"):
        apply_overrides(raw, ["train.epoch=2"])


def test_each_phase_runs_here_or_is_skipped_with_the_reason(tmp_path):
    raw = repo_params()
    assert check_phase(raw, ["train.epochs=0"], tmp_path) == (
        "params: 'train.epochs' must be >= 1, got 0"
    )
    assert "'model' is 'nope'; allowed values:" in check_phase(raw, ["model=nope"], tmp_path)
    verdicts = {p.name: check_phase(raw, p.overrides, tmp_path, tmp_path / "hub") for p in PHASES}
    assert len(verdicts) == 13  # twelve rungs and the leaky-split control
    for phase in PHASES:
        if "model=birdnet" in phase.overrides:  # offline: only the extra is needed
            assert verdicts[phase.name] == birdnet_missing()
        elif "features.kind=compare" in phase.overrides:  # offline too: openSMILE's extra
            assert verdicts[phase.name] == opensmile_missing()
        elif "model=ast" in phase.overrides or "model=resnet50" in phase.overrides:
            model = next(o for o in phase.overrides if o.startswith("model=")).split("=")[1]
            assert f"model_params.{model}.pretrained: weights" in verdicts[phase.name]
            assert "not available locally" in verdicts[phase.name]
            revision = raw["model_params"][model]["revision"]
            assert (
                f"`hf download {raw['model_params'][model]['pretrained']} " in verdicts[phase.name]
            )
            assert f"--revision {revision} --include config.json" in verdicts[phase.name]
        elif "features.kind=hf" in phase.overrides:  # the encoder's weights, as a model's
            assert verdicts[phase.name].startswith(
                "features.encoder: weights 'microsoft/wavlm-base-plus' not available locally"
            )
            assert (
                "`hf download microsoft/wavlm-base-plus --revision 4c66d4806a428f2e922ccfa1a962776e232d487b"
                in verdicts[phase.name]
            )
            assert "null to train from scratch" not in verdicts[phase.name]
        else:
            assert verdicts[phase.name] is None, (phase.name, verdicts[phase.name])


def test_an_extras_reason_is_the_one_given(monkeypatch, tmp_path):
    from audioclf.features import birdnet, opensmile

    monkeypatch.setattr(opensmile, "missing", lambda kind: f"no openSMILE for {kind}")
    monkeypatch.setattr(birdnet, "missing", lambda: 'pip install -e ".[birdnet]"')
    raw = repo_params()
    compare = next(p for p in PHASES if p.name == "compare-svm-group")
    assert check_phase(raw, compare.overrides, tmp_path) == "no openSMILE for compare"
    assert check_phase(raw, ["model=birdnet", "loss=ce"], tmp_path) == 'pip install -e ".[birdnet]"'


def _ast(pretrained):
    return {"model": "ast", "model_params": {"ast": {"pretrained": pretrained}}}


def test_pretrained_weights_must_be_a_folder_under_the_root_or_in_the_hub_cache(tmp_path):
    reason = pretrained_problem(_ast("MIT/ast-x"), tmp_path, cache_dir=tmp_path / "hub")
    assert "model_params.ast.pretrained: weights 'MIT/ast-x' not available locally" in reason
    assert pretrained_problem(_ast(None), tmp_path) is None  # from scratch
    assert pretrained_problem({"model": "cnn", "model_params": {}}, tmp_path) is None
    (tmp_path / "weights/ast").mkdir(parents=True)
    (tmp_path / "weights/ast/config.json").write_text("{}")
    assert "holds no config.json with weights" in pretrained_problem(_ast("weights/ast"), tmp_path)
    (tmp_path / "weights/ast/model.safetensors").write_bytes(b"")
    assert pretrained_problem(_ast("weights/ast"), tmp_path) is None  # relative: under the root
    assert pretrained_problem(_ast(str(tmp_path / "weights/ast")), tmp_path / "x") is None
    hub = tmp_path / "hub" / "models--org--tiny"
    (hub / "snapshots/abc").mkdir(parents=True)
    (hub / "refs").mkdir()
    (hub / "refs/main").write_text("abc")
    (hub / "snapshots/abc/config.json").write_text("{}")
    assert pretrained_problem(_ast("org/tiny"), tmp_path, tmp_path / "hub") is not None
    (hub / "snapshots/abc/model.safetensors").write_bytes(b"")
    assert pretrained_problem(_ast("org/tiny"), tmp_path, tmp_path / "hub") is None


def test_plan_names_seeded_runs_and_keeps_every_phase(tmp_path):
    raw = repo_params()
    planned = plan(
        raw, root=tmp_path, extra=["train.epochs=1"], seeds=3, only=["baseline"], tag="t"
    )
    assert [p.phase.name for p in planned] == [p.name for p in PHASES]
    base = planned[0]
    assert list(base.runs) == ["baseline-t-s42", "baseline-t-s43", "baseline-t-s44"]
    assert base.runs["baseline-t-s43"] == [
        *REFERENCE_FEATURES,
        "model=cnn",
        "loss=ce",
        "train.epochs=1",
        "train.seed=43",
    ]
    assert base.seeds == {"baseline-t-s42": 42, "baseline-t-s43": 43, "baseline-t-s44": 44}
    for item in planned[1:]:
        assert not item.runs and (item.reason or not item.selected)
    split = plan(raw, root=tmp_path, seeds=2, vary="split", only=["baseline"])[0]
    assert split.runs["baseline-s43"][-4:] == ["model=cnn", "loss=ce", "seed=43", "train.seed=43"]
    one = plan(raw, root=tmp_path, only=["baseline"])[0]
    assert one.runs == {"baseline": [*REFERENCE_FEATURES, "model=cnn", "loss=ce"]}
    assert one.seeds == {"baseline": None}
    raw["train"]["seed"] = 7  # a set train.seed starts the series; --vary split starts at seed
    assert list(plan(raw, root=tmp_path, seeds=2, only=["baseline"])[0].runs) == [
        "baseline-s7",
        "baseline-s8",
    ]
    split = plan(raw, root=tmp_path, seeds=2, vary="split", only=["baseline"])[0]
    assert list(split.runs) == ["baseline-s42", "baseline-s43"]


def test_plan_rejects_bad_input_before_anything_runs(tmp_path):
    raw = repo_params()
    with pytest.raises(ValueError, match="--set: params: 'train.epochs' must be >= 1, got 0"):
        plan(raw, root=tmp_path, extra=["train.epochs=0"])
    with pytest.raises(ValueError, match=r"unknown phase\(s\) \['nope'\]"):
        plan(raw, root=tmp_path, only=["nope"])
    with pytest.raises(ValueError, match="vary must be one of train, split, got 'data'"):
        plan(raw, root=tmp_path, seeds=2, vary="data")


def _params_file(tmp_path, **evaluate):
    raw = repo_params()
    raw["evaluate"].update(evaluate)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return str(tmp_path / "params.yaml")


def test_dry_runs_queue_nothing(caplog, tmp_path):
    params = _params_file(tmp_path)
    with caplog.at_level("INFO", logger="audioclf"):
        out = ladder.main(["--params", params, "--dry-run", "--seeds", "2"])
    assert "-S features.segment_seconds=4.0 -S model=cnn -S loss=ce -S train.seed=42" in (
        caplog.text
    )
    assert set(out) == {"planned"} and not (tmp_path / "reports").exists()
    args = ["--params", params, "--dry-run", "-n", "2", "-S", "loss=focal"]
    with caplog.at_level("INFO", logger="audioclf"):
        runs = repeat.main(args)["planned"][0].runs
    assert runs["repeat-s43"] == ["loss=focal", "train.seed=43"]
    assert "dvc exp run --queue -n repeat-s42 -S loss=focal -S train.seed=42" in caplog.text
    split = repeat.main([*args, "--vary", "split"])["planned"][0].runs
    assert split["repeat-s43"] == ["loss=focal", "seed=43", "train.seed=43"]
    with pytest.raises(SystemExit):
        repeat.main(["--params", params, "-n", "1"])


def _exp(name, metrics, rev=None, error=None, timestamp="2026-01-01T10:00:00"):
    """One experiment of ``dvc exp show --json``; ``rev``: the commit holding its files."""
    data = {
        "timestamp": timestamp,
        "metrics": {"reports/metrics.json": {"data": metrics}},
        "params": {"params.yaml": {"data": {"seed": 1}}},
    }
    return {"rev": rev or name, "name": name, "error": error, "data": data}


def _shown(experiments):
    """``dvc exp show --json``: the workspace, then one baseline commit and its experiments."""
    groups = [{"name": e["name"], "executor": None, "revs": [e]} for e in experiments]
    return [
        {"rev": "workspace", "name": None, "data": {}, "error": None, "experiments": None},
        {"rev": "abc", "name": "main", "data": {}, "error": None, "experiments": groups},
    ]


def test_collect_ignores_a_failed_experiments_copied_metrics():
    failed = {"msg": "Experiment run failed", "type": ""}
    shown = _shown(
        [
            _exp("a", {"test": {"accuracy": 0.5}}),
            _exp("b", {"test": {"accuracy": 0.9}}, error=failed),
            _exp("c", {"test": {"accuracy": 0.1}}, timestamp="2026-01-01T09:00:00"),
            _exp("c", {"test": {"accuracy": 0.3}}),
            _exp("other", {"test": {"accuracy": 0.2}}),
        ]
    )
    found = collect(shown, ["a", "b", "c", "missing"])
    assert found["a"] == {"metrics": {"test": {"accuracy": 0.5}}, "params": {"seed": 1}, "rev": "a"}
    assert found["b"] == {"error": "Experiment run failed"}  # not the 0.9 of its baseline
    assert found["c"]["metrics"]["test"]["accuracy"] == 0.3  # the latest of one name
    assert set(found) == {"a", "b", "c"}


class FakeDvc(Dvc):
    """DVC's answers to the ladder's commands, without DVC: ``answers`` maps a command's first
    words to its stdout; every command is recorded in ``calls``."""

    def __init__(self, root, answers, head="a" * 40):
        super().__init__(root)
        self.answers, self.head, self.calls = answers, head, []

    def run(self, args):
        self.calls.append(args)
        for words, out in self.answers.items():
            if tuple(args[: len(words)]) == words:
                if isinstance(out, Exception):
                    raise out
                return out
        return ""

    def commit(self, rev="HEAD", *, short=False):
        return (self.head if rev == "HEAD" else rev)[: 7 if short else None]


STATUS = """Task     Name        Created    Status
1a2b3c4  baseline-s42  10:00 AM   Failed
5d6e7f8  other      10:01 AM   Queued
"""
LOG = (
    "Running stage 'train':\nTraceback (most recent call last):\n  File 'x'\n"
    "audioclf.config.ParamsError: params: 'loss' is 'focal'; allowed values: ce\n"
    "ERROR: failed to reproduce 'train': failed to run: python stages/train.py, exited with 1\n"
)


def test_queue_conflicts_stop_the_ladder_unless_forced(tmp_path):
    planned = plan(repo_params(), root=tmp_path, seeds=2, only=["baseline"])
    answers = {("exp", "list"): "baseline-s43\nolder\n", ("queue", "status"): STATUS}
    with pytest.raises(DvcError, match="already used on this commit: baseline-s43, 1a2b3c4"):
        ladder.execute(planned, FakeDvc(tmp_path, answers))
    dvc = FakeDvc(tmp_path, answers)
    with pytest.raises(DvcError, match=r"the DVC queue already holds experiments \['other'\]"):
        ladder.execute(planned, dvc, force=True)
    assert ["exp", "remove", "baseline-s43"] in dvc.calls and ["queue", "remove", "1a2b3c4"] in (
        dvc.calls
    )


def test_the_queue_is_filled_run_and_read_back_from_the_commit_it_was_queued_from(tmp_path):
    planned = plan(repo_params(), root=tmp_path, seeds=2, only=["baseline"])
    shown = _shown([_exp("baseline-s42", {"test": {"accuracy": 0.5}})])
    dvc = FakeDvc(
        tmp_path,
        {("exp", "show"): json.dumps(shown), ("queue", "logs", "baseline-s43"): LOG},
        head="b" * 40,
    )
    found = ladder.execute(planned, dvc, jobs=2)
    assert dvc.calls[3:] == [  # after exp list and queue status twice
        [
            "exp",
            "run",
            "--queue",
            "-n",
            "baseline-s42",
            *[arg for o in REFERENCE_FEATURES for arg in ("-S", o)],
            "-S",
            "model=cnn",
            "-S",
            "loss=ce",
            "-S",
            "train.seed=42",
        ],
        [
            "exp",
            "run",
            "--queue",
            "-n",
            "baseline-s43",
            *[arg for o in REFERENCE_FEATURES for arg in ("-S", o)],
            "-S",
            "model=cnn",
            "-S",
            "loss=ce",
            "-S",
            "train.seed=43",
        ],
        ["exp", "run", "--run-all", "-j", "2"],
        ["exp", "show", "--json", "--rev", "b" * 40],
        ["queue", "logs", "baseline-s43"],
    ]
    assert found["baseline-s42"]["metrics"] == {"test": {"accuracy": 0.5}}
    assert found["baseline-s43"] == {
        "error": "audioclf.config.ParamsError: params: 'loss' is 'focal'; allowed values: ce"
    }
    dvc.head = "c" * 40  # a commit made while the queue ran must not hide the experiments
    ladder.read_back(["baseline-s42"], dvc, "b" * 40)
    assert dvc.calls[-1] == ["exp", "show", "--json", "--rev", "b" * 40]
    dvc.answers[("queue", "logs")] = DvcError("no such task")
    assert dvc.failure_reason("x").startswith("failed (no log: no such task")


def test_summary_and_metrics_table_golden(tmp_path):
    phases = [Phase("base", "CNN + CE", ("model=cnn",)), Phase("v2", "CNNv2", ("model=cnn_v2",))]
    planned = plan(repo_params(), phases, root=tmp_path, seeds=2)
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
    table = "\n".join(metrics_table(results, "base"))
    rows = {line.split(" | ")[0]: line.split(" | ") for line in table.splitlines()[2:]}
    base, v2 = rows["| CNN + CE (`base`) ← baseline"], rows["| CNNv2 (`v2`)"]
    assert base[1:3] == ["2", "60.0 ± 14.1"] and base[9] == "15.0 ± 7.1"  # mean ± sample std
    assert v2[1:3] == ["1", "80.0"] and v2[9] == "5.0"  # values only: differences need intervals
    assert rows["| AST (`ast`)"][-1] == "skipped: params: 'model' is 'ast' |"
    assert "| half \\| failed (`half`) |" in table and "failed: a\\|b |" in table  # pipes escaped
    assert "†" not in table  # no run normalised per group
    found = {"base": {"metrics": {"test": {"accuracy": 0.5}}}}
    found["g"] = {"metrics": {"test": {"accuracy": 0.6}, "transductive": True}}
    phases = [phases[0], Phase("g", "CNN + group", ("model=cnn",))]
    lines = metrics_table(summarise(plan(repo_params(), phases, root=tmp_path), found), "base")
    assert "| CNN + group (`g`) † | 1 | 60.0 |" in lines[3] and lines[-1] == TRANSDUCTIVE_NOTE


def test_the_ladder_pairs_each_phase_with_the_baseline_run_of_its_seed(repo):
    root = repo[0]
    base = PhaseResult("base", "Base", "ran", experiments=["base-s1", "base-s2"])
    phase = PhaseResult("up", "Up", "ran", experiments=["up-s1", "up-s2", "up-s3"])
    planned = plan(repo_params(), [Phase("base", "", ()), Phase("up", "", ())], root=root)
    planned[0].seeds = {"base-s1": 1, "base-s2": 2}
    planned[1].seeds = {"up-s1": 1, "up-s2": 2, "up-s3": 3}
    revs = {"base-s1": "a", "base-s2": "a", "up-s1": "b", "up-s2": "workspace"}
    raw = yaml.safe_load((root / "params.yaml").read_text())
    compare_with_baseline([base, phase], planned, revs, raw, root, baseline="base")
    c = phase.comparison
    assert base.comparison is None and c.pairs == [("base-s1", "up-s1"), ("base-s2", "up-s2")]
    assert c.note == "1 run(s) without a baseline run of the same seed"
    files = {n: RunFiles(n, root).predictions() for n in ("a", "b", "workspace")}
    for comparison, name in zip(c.per_run, ("b", "workspace"), strict=True):
        assert comparison.paired and comparison.differences["accuracy"].diff == pytest.approx(
            headline(files[name].y_true, files[name].probs)["accuracy"]
            - headline(files["a"].y_true, files["a"].probs)["accuracy"]
        )
    mean = np.mean([comp.differences["macro_f1"].diff for comp in c.per_run])
    assert c.combined["macro_f1"].diff == pytest.approx(mean)
    assert c.combined["macro_f1"].seeds is not None  # two intervals: seeds and files
    row = next(line for line in comparison_rows([base, phase]) if "`up`" in line)
    assert row.startswith("| Up (`up`) | 2 | ") and "(seeds [" in row and "p = " in row


def test_phases_md_from_experiments_dvc_shows(repo, caplog):
    """run_phases over a stand-in queue whose experiments' files are ``repo``'s revisions."""
    root = repo[0]
    raw = yaml.safe_load((root / "params.yaml").read_text())
    phases = [PHASES[0], Phase("better", "Better", ("model=cnn",)), Phase("bad", "Bad", ("x=1",))]
    planned = plan(raw, phases, root=root, seeds=2, only=["baseline", "better"])
    metrics = {"test": {"accuracy": 0.5}}
    runs = {"baseline-s42": "a", "baseline-s43": "a", "better-s42": "b", "better-s43": "b"}
    shown = _shown([_exp(name, metrics, rev) for name, rev in runs.items()])
    dvc = FakeDvc(root, {("exp", "show"): json.dumps(shown)})
    results, text = run_phases(
        planned, raw, dvc, command="audioclf ladder", vary="train", baseline="baseline"
    )
    assert text.startswith("# Phase ladder\n\nDataset `synthetic`, baseline commit `aaaaaaa`")
    assert "2 runs per phase with `train.seed` = 42, 43" in text and "100 bootstrap" in text
    assert "| Bad (`bad`) | – |" in text and "skipped: -S x: params.yaml has no key 'x'" in text
    against = text.split("## Against `baseline`")[1]
    better = next(line for line in against.splitlines() if "(`better`)" in line)
    assert re.match(r"\| Better \(`better`\) \| 2 \| \*\*\+\d", better)
    assert "| `better-s43` | `baseline-s43` |" in against
    assert "- `better`: `model=cnn`; experiments: `better-s42`, `better-s43`" in text


def test_show_keeps_the_columns_that_matter():
    cmd = show.exp_show_command(["--csv"], ["augment", "dataset", "model", "train"])
    keep = re.compile(cmd[cmd.index("--keep") + 1])
    drop = re.compile(cmd[cmd.index("--drop") + 1])
    assert "--only-changed" in cmd  # other params: where they differ between the rows
    for column in (
        "Experiment",
        "rev",
        "dataset",
        "model",
        "test.macro_map",
        "reports/metrics.json:test.accuracy",
        "buckets.tail.macro_f1",
    ):
        assert keep.match(column), column
    for column in ("train.lr", "augment.mixup.p", "test.ece", "test_ci.accuracy", "best_epoch"):
        assert not keep.match(column), column
    for column in ("test.ece", "test_ci.accuracy.low", "folds.0.accuracy", "best_epoch"):
        assert drop.match(column), column  # metrics
    for column in ("train.lr", "augment.mixup.p", "model"):
        assert not drop.match(column), column  # params, shown where they changed
    assert show.exp_show_command(["--all", "--md"]) == ["dvc", "exp", "show", "--md"]
