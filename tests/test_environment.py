"""The install: exact torch pins, a lock in step with them, and a clear failure when the stack does not load."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from audioclf.environment import BrokenEnvironment, check_environment, describe, pinned_versions

REPO = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")


def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {
        m.group(1).lower(): m.group(2)
        for m in (re.match(r"([A-Za-z0-9_.-]+)\s*==\s*([^;,\s]+)", d) for d in deps)
        if m
    }


def test_torch_and_torchaudio_are_pinned_exactly_and_built_for_each_other():
    pins = _pyproject_pins()
    assert "*" not in pins.get("torch", "*") and "*" not in pins.get("torchaudio", "*")
    # torchaudio X.Y.Z is built against torch X.Y.Z: a patch release of one alone does not load
    assert pins["torch"] == pins["torchaudio"]


def test_the_lock_pins_what_pyproject_pins():
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    for name, version in _pyproject_pins().items():
        assert locked[name] == version, (
            f"uv.lock has {name} {locked[name]}, pyproject.toml pins {version}"
        )
    # every locked package is exact and carries hashes (the project itself is built from source)
    for package in lock["package"]:
        if package["name"] == "audioclf":
            continue
        files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        assert files and all(f.get("hash", "").startswith("sha256:") for f in files), package[
            "name"
        ]


def test_installed_torch_pair_is_the_pinned_one():
    pins = pinned_versions()
    if not pins:
        pytest.skip("audioclf is not installed (run from src/ only): no pins to compare with")
    import torch
    import torchaudio

    assert torch.__version__.split("+")[0] == pins["torch"]
    assert torchaudio.__version__.split("+")[0] == pins["torchaudio"]


# an entry point's imports, as every stage and ``audioclf <command>`` guard them
ENTRY_POINT = (
    "from audioclf.cli import stack_imports\n"
    "with stack_imports():\n"
    "    import torchaudio\n"
    "print('usage:')"
)


def _fake_broken_torchaudio(root: Path, version: str = "2.11.1") -> Path:
    """A torchaudio that fails to load the way a build for another torch does."""
    pkg = root / "torchaudio"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        'raise OSError("/site/torchaudio/lib/libtorchaudio.so: undefined symbol: '
        'torch_exception_get_what_without_backtrace")\n'
    )
    info = root / f"torchaudio-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torchaudio\nVersion: {version}\n")
    return root


def test_an_entry_point_with_a_broken_torchaudio_fails_early_with_versions_and_fix(tmp_path):
    fake = _fake_broken_torchaudio(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(REPO / "src")])}
    env.pop("AUDIOCLF_VERBOSE", None)
    out = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT, "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert (
        "Traceback" not in out.stderr and "usage:" not in out.stdout
    )  # failed before parsing any argument
    message = out.stderr.strip()
    assert message.startswith("audioclf: the installed packages do not load together")
    assert "torchaudio 2.11.1" in message and "undefined symbol" in message
    assert re.search(r"torch \d+\.\d+", message)
    assert "uv sync --locked --extra dev" in message


def test_verbose_keeps_the_traceback(tmp_path):
    fake = _fake_broken_torchaudio(tmp_path / "site")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(fake), str(REPO / "src")]),
        "AUDIOCLF_VERBOSE": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT, "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "BrokenEnvironment" in out.stderr


def test_check_environment_names_every_module_that_fails():
    with pytest.raises(BrokenEnvironment) as err:
        check_environment({"json": "json", "audioclf_no_such_module": "audioclf-no-such"})
    assert (
        "audioclf_no_such_module" in str(err.value)
        and "json" not in str(err.value).split("Installed")[0]
    )


def test_describe_lists_installed_and_pinned_versions():
    text = describe({"torchaudio": OSError("undefined symbol: x")})
    assert "torchaudio" in text and "OSError: undefined symbol: x" in text
    assert "uv sync --locked --extra dev" in text
