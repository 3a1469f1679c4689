"""Outputs are replaced whole or not at all."""

import pytest

from audioclf.errors import MissingInputError
from audioclf.io import atomic_path, read_json, write_json


def test_a_file_appears_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "out" / "report.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert not target.exists() and list(target.parent.iterdir()) == []  # no temporary left either
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"


def test_a_failed_rewrite_keeps_the_previous_output(tmp_path):
    target = tmp_path / "folder"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("first")
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "b.txt").write_text("second, unfinished")
        raise ValueError
    assert [p.name for p in target.iterdir()] == ["a.txt"] and (
        target / "a.txt"
    ).read_text() == "first"
    with atomic_path(target) as tmp:  # a folder replaces a folder whole
        tmp.mkdir()
        (tmp / "b.txt").write_text("second")
    assert [p.name for p in target.iterdir()] == ["b.txt"]


def test_json_round_trip_and_a_missing_input_names_its_stage(tmp_path):
    write_json({"b": 1, "a": [1.5]}, tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    assert read_json(tmp_path / "x.json") == {"a": [1.5], "b": 1}
    with pytest.raises(MissingInputError, match="has the stage that writes it run"):
        read_json(tmp_path / "nope.json")
