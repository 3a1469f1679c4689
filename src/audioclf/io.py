"""Writing outputs so that nothing half-written is ever taken for finished."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audioclf.errors import MissingInputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds.

    Works for files and directories: the block writes whatever it likes at the yielded
    path, which is renamed over ``path`` (same filesystem, so the rename is atomic; a
    folder's previous version is moved aside first and deleted only once the new one is
    in place). What a killed process left (its temporary, or a previous version it had
    moved aside) is cleaned up, or put back, by the next call for the same ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    tmp, old = (path.with_name(f".{path.name}.{kind}-{os.getpid()}") for kind in ("tmp", "old"))
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    finally:
        _remove(tmp)


def _recover(path: Path) -> None:
    """Remove the temporaries of dead writers of ``path``; put back a previous version a dead
    writer had moved aside if ``path`` itself is gone."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*-*"):
        kind, _, pid = leftover.name.rpartition("-")
        if not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
            continue
        if kind.endswith(".old") and not path.exists():
            os.replace(leftover, path)
        elif kind.endswith((".old", ".tmp")):
            _remove(leftover)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def repo_root() -> Path:
    """The real repository root: ``DVC_ROOT`` when DVC runs the stage (``dvc exp run --queue``
    and ``--temp`` run it in a throw-away copy of the repository), else the working directory.
    Entry points call it once and pass the result down (:meth:`audioclf.config.Params.located`).
    """
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} not found (has the stage that writes it run?)")
    return json.loads(path.read_text())
