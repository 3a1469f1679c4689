"""``audioclf compare``: two runs read back by name, each metric's difference with its interval."""

import re

import pytest
from tests.experiments.conftest import LABELS

from audioclf.evaluation.metrics import headline
from audioclf.evaluation.paired import compare_runs
from audioclf.experiments import compare as compare_cmd
from audioclf.experiments.runs import RunFiles


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
    assert "`audioclf compare a b --repo " in text
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
        n_boot=100,
        level=0.95,
        seed=42,
        bucket_of_a=RunFiles("a", root).bucket_of(tuple(LABELS)),
        bucket_of_b=RunFiles("b", root).bucket_of(tuple(LABELS)),
    )
    assert direct == out["comparison"]  # the command's defaults: A's evaluate params and seed


def test_a_run_against_itself_is_zero_and_not_significant(repo):
    out = compare_cmd.main(["b", "b", "--repo", str(repo[0]), "--bootstrap", "50"])
    for d in out["comparison"].differences.values():
        assert (d.diff, d.low, d.high) == (0.0, 0.0, 0.0)
    assert "Significant: none." in out["text"] and "0 / 0, p = 1" in out["text"]
    assert all(r[2] == "+0.0 [+0.0, +0.0]" for r in _table(out["text"]).values() if len(r) == 3)


@pytest.mark.parametrize("option", [["--level", "1.5"], ["--bootstrap", "0"]])
def test_bad_options_stop_before_reading(option, capsys):
    with pytest.raises(SystemExit):
        compare_cmd.main(["a", "b", "--repo", "/nonexistent", *option])
    assert option[0] in capsys.readouterr().err
