"""Every example in the library's docstrings runs and gives what it shows."""

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = sorted(
    ".".join(p.relative_to(SRC).with_suffix("").parts)
    for p in (SRC / "audioclf").rglob("*.py")
    if ">>>" in p.read_text()
)


def test_modules_with_examples_are_found():
    assert "audioclf.features.frontends" in MODULES and "audioclf.features.audio" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
