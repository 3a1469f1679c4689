"""Dataset adapters. Each writes audio files plus the common manifest (see
:mod:`audioclf.data.manifest`), so no later stage knows where the audio came from.

``DATASETS`` maps the ``dataset`` param to ``prepare(data, seed, out_dir) -> entries``,
where ``data`` is the validated :class:`audioclf.config.DataConfig`. Adapters are
imported on use, so choosing one never imports (or needs) the others.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from audioclf.data.datasets.archive import DatasetError
from audioclf.data.manifest import Entry, read_dropped

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


# what to check when a dataset gives fewer than two classes
LAYOUT_HINT = {
    "folder": "data.folder labels by class sub-folder (dog/a.wav, cat/b.wav; one folder wrapping "
    "them all is looked through), by data.folder.label_regex or by data.folder.label_column",
    "xenocanto": "list at least two data.xenocanto.species, or widen data.xenocanto.query",
}


def prepare(dataset: str, data: DataConfig, seed: int, out_dir: Path) -> list[Entry]:
    """Run the adapter of ``dataset`` into ``out_dir``; logs how many files it wrote.

    Raises:
        DatasetError: the dataset has fewer than two classes (a classifier needs two); the
            message names the classes found and their file counts.
    """
    entries = DATASETS[dataset](data, seed, out_dir)
    counts = Counter(e.label for e in entries)
    if len(counts) < 2:
        found = ", ".join(f"{label!r}: {n} files" for label, n in counts.items())
        dropped = read_dropped(out_dir / "manifest.csv")
        left_out = "; ".join(f"{d['path']}: {d['reason']}" for d in dropped[:3])
        raise DatasetError(
            f"dataset '{dataset}' gave {len(counts)} class ({found}); a classifier needs at "
            f"least two. {LAYOUT_HINT.get(dataset, 'Check the data params')}. "
            f"{len(dropped)} files left out" + (f" (first: {left_out})" if dropped else "")
        )
    log.info("download: %d files of dataset '%s'", len(entries), dataset)
    return entries
