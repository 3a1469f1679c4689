"""Progress lines through logging, so that a long stage is watchable in any log.

A tqdm bar redraws one terminal line; piped into a file (``nohup``, a cluster job, ``dvc repro``
in CI) it is either off or a run of carriage returns. :class:`Progress` instead logs a plain line
every ``every_s`` seconds (``features: 120/1000 files (12%), 9.8 files/s, ETA 01:30``), and
:func:`eta` gives the same remaining-time text to the training loop's epoch lines. tqdm
formats the times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
EVERY_S = 15.0  # seconds between lines: a few per minute in a log, nothing on a short run


def eta(seconds: float) -> str:
    """Seconds as ``MM:SS`` (``H:MM:SS`` from an hour).

    >>> eta(90), eta(3725)
    ('01:30', '1:02:05')
    """
    return tqdm.format_interval(max(0, round(seconds)))


class Progress:
    """Counts work done and logs ``<what>: done/total <unit> (%), rate, ETA`` at most every
    ``every_s`` seconds (and never for the last item: the caller's own summary line follows).

    Args:
        logger: where the lines go (INFO).
        what: the line's prefix, e.g. the stage's name.
        total: how many items there are.
        unit: what an item is (``files``).
        every_s: seconds between lines (None: :data:`EVERY_S`).
        clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        total: int,
        unit: str = "files",
        *,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger, self.what, self.total, self.unit = logger, what, total, unit
        self.every_s, self.clock = EVERY_S if every_s is None else every_s, clock
        self.done = 0
        self.start = self.last = clock()

    def update(self, n: int = 1) -> None:
        """``n`` more items done; logs a line if ``every_s`` has passed since the last."""
        self.done += n
        now = self.clock()
        if now - self.last < self.every_s or self.done >= self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        self.logger.info(
            "%s: %d/%d %s (%.0f%%), %.1f %s/s, ETA %s",
            self.what,
            self.done,
            self.total,
            self.unit,
            100 * self.done / max(self.total, 1),
            rate,
            self.unit,
            eta((self.total - self.done) / rate),
        )

    def wrap(self, items: Iterable[T]) -> Iterator[T]:
        """``items`` one by one, counting each when the caller asks for the next (it is done)."""
        for item in items:
            yield item
            self.update()
