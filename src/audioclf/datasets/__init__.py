"""Dataset adapters. Each writes audio files plus the common manifest (see
:mod:`audioclf.manifest`), so no later stage knows where the audio came from.

``DATASETS`` maps the ``dataset`` param to ``prepare(data, seed, out_dir) -> entries``,
where ``data`` is the validated :class:`audioclf.config.DataConfig`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from audioclf.manifest import Entry

if TYPE_CHECKING:
    from audioclf.config import DataConfig


def _synthetic(data: DataConfig, seed: int, out_dir: Path) -> list[Entry]:
    from audioclf.datasets.synthetic import generate

    return generate(data.synthetic, seed, out_dir)


DATASETS: dict[str, Callable[["DataConfig", int, Path], list[Entry]]] = {
    "synthetic": _synthetic,
}
