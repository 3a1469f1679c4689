"""reports/probabilities.csv: written exactly, read back with every row checked."""

import numpy as np
import pytest

from audioclf.evaluation.metrics import HEADLINE, classification_metrics, headline
from audioclf.evaluation.predictions import (
    PredictionsError,
    parse_probabilities,
    write_probabilities,
)

LABELS = ["a", "b,quoted", "c"]


def _predictions(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)).astype(np.float32) + 2 * np.eye(3, dtype=np.float32)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rows = [
        {"fold": i % 2, "path": f"audio/x{i}.wav", "actual": LABELS[y[i]], "predicted": "?"}
        for i in range(n)
    ]
    return rows, probs.astype(np.float32), y


def test_round_trip_is_exact_and_gives_the_same_metrics(tmp_path):
    rows, probs, y = _predictions()
    write_probabilities(tmp_path / "p.csv", rows, probs, LABELS)
    read = parse_probabilities((tmp_path / "p.csv").read_text(), "p.csv")
    assert read.labels == tuple(LABELS) and read.paths == tuple(r["path"] for r in rows)
    assert read.probs.dtype == np.float32 and np.array_equal(read.probs, probs)
    assert np.array_equal(read.y_true, y) and list(read.folds) == [r["fold"] for r in rows]
    assert np.array_equal(read.correct, probs.argmax(axis=1) == y)
    original = classification_metrics(y, probs, LABELS)
    again = headline(read.y_true, read.probs)
    for metric in HEADLINE:
        assert again[metric] == pytest.approx(original[metric], abs=1e-12), metric


def test_reordered_follows_the_given_paths(tmp_path):
    rows, probs, _ = _predictions(5)
    write_probabilities(tmp_path / "p.csv", rows, probs, LABELS)
    read = parse_probabilities((tmp_path / "p.csv").read_text(), "p.csv")
    order = list(reversed(read.paths))
    back = read.reordered(order)
    assert back.paths == tuple(order) and np.array_equal(back.probs, probs[::-1])


def test_write_checks_the_shape(tmp_path):
    rows, probs, _ = _predictions(4)
    with pytest.raises(ValueError, match=r"probs must have shape \(4, 3\), got \(4, 2\)"):
        write_probabilities(tmp_path / "p.csv", rows, probs[:, :2], LABELS)
    assert not (tmp_path / "p.csv").exists()


GOOD = "fold,path,actual,p_a,p_b\n0,x.wav,a,0.75,0.25\n0,y.wav,b,0.5,0.5\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the header must start with fold,path,actual, got nothing"),
        ("path,fold,actual,p_a,p_b\n", "the header must start with fold,path,actual"),
        ("fold,path,actual,p_a\n0,x,a,1\n", r"one p_<label> column per class \(at least two\)"),
        ("fold,path,actual,p_a,q_b\n", "one p_<label> column per class"),
        ("fold,path,actual,p_a,p_a\n", "a class column appears twice"),
        ("fold,path,actual,p_a,p_b\n", "no predictions"),
        (GOOD + "0,z.wav,a,0.5\n", "line 4: 4 fields, the header has 5"),
        (GOOD + "-1,z.wav,a,0.5,0.5\n", "line 4: fold must be a number >= 0, got '-1'"),
        (GOOD + "0,z.wav,c,0.5,0.5\n", "line 4: class 'c' has no column"),
        (GOOD + "0,z.wav,a,nan,0.5\n", r"line 4: probabilities must be numbers in \[0, 1\]"),
        (GOOD + "0,z.wav,a,1.5,0.5\n", r"line 4: probabilities must be numbers in \[0, 1\]"),
        (GOOD + "0,z.wav,a,half,0.5\n", "line 4: a probability is not a number"),
        (GOOD + "1,x.wav,a,0.5,0.5\n", r"file\(s\) listed twice: \['x.wav'\]"),
    ],
)
def test_bad_files_name_the_problem_and_the_fix(text, message):
    with pytest.raises(PredictionsError, match=message) as err:
        parse_probabilities(text, "exp:reports/probabilities.csv")
    assert str(err.value).startswith("exp:reports/probabilities.csv")
    assert "\n" not in str(err.value)


def test_a_good_file_reads():
    read = parse_probabilities(GOOD, "p.csv")
    assert read.labels == ("a", "b") and list(read.y_true) == [0, 1]
    assert read.probs.tolist() == [[0.75, 0.25], [0.5, 0.5]]


def test_groups_are_written_and_read_back_and_older_files_have_none(tmp_path):
    rows, probs, _ = _predictions(6)
    grouped = [{**r, "group": f"rec{i // 2}"} for i, r in enumerate(rows)]
    write_probabilities(tmp_path / "p.csv", grouped, probs, LABELS)
    text = (tmp_path / "p.csv").read_text()
    assert text.startswith("fold,path,actual,group,p_a,")
    read = parse_probabilities(text, "p.csv")
    assert read.groups == ("rec0", "rec0", "rec1", "rec1", "rec2", "rec2")
    assert np.array_equal(read.probs, probs)
    assert read.reordered(list(reversed(read.paths))).groups == tuple(reversed(read.groups))
    write_probabilities(tmp_path / "old.csv", rows, probs, LABELS)  # as written before groups
    old = parse_probabilities((tmp_path / "old.csv").read_text(), "old.csv")
    assert old.groups is None and np.array_equal(old.probs, probs)
