"""Dataset adapters. Each writes audio files plus the common manifest (see
:mod:`audioclf.data.manifest`), so no later stage knows where the audio came from.

``DATASETS`` maps the ``dataset`` param to ``prepare(data, seed, out_dir) -> entries``,
where ``data`` is the validated :class:`audioclf.config.DataConfig`. Adapters are
imported on use, so choosing one never imports (or needs) the others.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from audioclf.data.manifest import Entry

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from audioclf.config.data import DataConfig


def _synthetic(data: DataConfig, seed: int, out_dir: Path) -> list[Entry]:
    from audioclf.data.datasets.synthetic import generate

    return generate(data.synthetic, seed, out_dir)


def _adapter(module: str) -> Callable[[DataConfig, int, Path], list[Entry]]:
    """``prepare`` of ``audioclf.data.datasets.<module>``, imported when first called."""

    def prepare(data: DataConfig, seed: int, out_dir: Path) -> list[Entry]:
        return importlib.import_module(f"audioclf.data.datasets.{module}").prepare(
            data, seed, out_dir
        )

    prepare.__qualname__ = f"{module}.prepare"
    return prepare


DATASETS: dict[str, Callable[[DataConfig, int, Path], list[Entry]]] = {
    "synthetic": _synthetic,
    "esc50": _adapter("esc50"),
    "emodb": _adapter("emodb"),
    "xenocanto": _adapter("xenocanto"),
    "folder": _adapter("folder"),
}


def prepare(dataset: str, data: DataConfig, seed: int, out_dir: Path) -> list[Entry]:
    """Run the adapter of ``dataset`` into ``out_dir``; logs how many files it wrote."""
    entries = DATASETS[dataset](data, seed, out_dir)
    log.info("download: %d files of dataset '%s'", len(entries), dataset)
    return entries
