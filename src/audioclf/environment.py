"""The installed stack loads together: torch beside the torchaudio built for it, and every
compiled dependency.

A mismatched pair (torchaudio 2.11.1 beside torch 2.11.0, say) fails deep inside an
import with ``undefined symbol``. When an entry point's import fails,
:func:`check_environment` turns that into one sentence that names the versions
installed, the versions the project pins and the command that fixes it (see
:func:`audioclf.cli.stack_imports`). Imports only the standard library (it must work
when nothing else does).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re

from audioclf.errors import UserError

# import name -> distribution name of the compiled dependencies, torch first
COMPILED = {
    "torch": "torch",
    "torchaudio": "torchaudio",
    "numpy": "numpy",
    "scipy": "scipy",
    "soundfile": "soundfile",
    "soxr": "soxr",
}
FIX = "uv sync --locked --extra dev"
VERBOSE_ENV = "AUDIOCLF_VERBOSE"


class BrokenEnvironment(UserError, ImportError):
    """A compiled dependency does not import; the message names versions and the fix."""


def installed_version(dist: str) -> str:
    """The installed version of distribution ``dist``, or ``not installed``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def pinned_versions() -> dict[str, str]:
    """Distribution -> version of the exact (``==``) pins of the installed audioclf ({} if not installed)."""
    try:
        requires = importlib.metadata.requires("audioclf") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    pins = (
        re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^;,\s]+)\s*", r.split(";")[0])
        for r in requires
    )
    return {m.group(1).lower(): m.group(2) for m in pins if m}


def describe(failures: dict[str, BaseException]) -> str:
    """One message for the modules that failed to import (module -> its exception)."""
    versions = {name: installed_version(dist) for name, dist in COMPILED.items()}
    pins = pinned_versions()
    broken = ", ".join(
        f"{name} {versions.get(name, '?')} ({type(exc).__name__}: {exc})"
        for name, exc in failures.items()
    )
    stack = ", ".join(f"{name} {versions[name]}" for name in ("torch", "torchaudio"))
    wanted = ", ".join(f"{d}=={pins[d]}" for d in ("torch", "torchaudio") if d in pins)
    return (
        f"the installed packages do not load together: {broken}. Installed: {stack}"
        + (f"; the project pins {wanted}" if wanted else "")
        + f". Fix: reinstall the locked environment with `{FIX}` (see docs/install.md)"
        + (f", or `python -m pip install {' '.join(wanted.split(', '))}`" if wanted else "")
        + "."
    )


def check_environment(modules: dict[str, str] = COMPILED) -> None:
    """Import every compiled dependency; raise :class:`BrokenEnvironment` naming all that fail.

    Raises:
        BrokenEnvironment: with :func:`describe`'s message.
    """
    failures = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except (
            ImportError,
            OSError,
            RuntimeError,
        ) as exc:  # a missing symbol is an OSError from dlopen
            failures[name] = exc
    if failures:
        raise BrokenEnvironment(describe(failures)) from None
