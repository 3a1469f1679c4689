"""Early stopping and the choice of the best epoch, made to survive a small, noisy validation split.

On a validation split of a few dozen files, macro-F1 moves in coarse steps (one file more or
less right shifts it by several points) and plateaus after a few epochs while the validation
loss still falls. Picking the epoch by strictly higher macro-F1 alone then keeps an early lucky
epoch and stops ``patience`` epochs later, before the model has learned. So:

* the best epoch is the one of highest macro-F1, where macro-F1 within ``tolerance`` of the
  highest seen so far counts as a tie that the lower validation loss breaks (the tolerance is
  one validation file's worth, ``1 / n_files``: what a single file changes on such a split);
  comparing against the highest macro-F1 seen, not the best epoch's, keeps a chain of ties from
  drifting down;
* no epoch before ``min_epochs`` is kept as the best (Keras's ``EarlyStopping(start_from_epoch=)``):
  until then each epoch stands in for the best, and only epochs from ``min_epochs`` on are compared.
  On a tiny validation split (one speaker of 12 files) the validation scores of an untrained
  network can peak in epoch 2 and never be matched, while the network goes on to learn what the
  other speakers share; keeping epoch 2 leaves the fold collapsed at chance;
* training stops after ``patience`` epochs without a new best, so never before
  ``min_epochs + patience``.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """The rule; ``history`` holds the earlier epochs' rows (``epoch``, ``val_macro_f1``,
    ``val_loss``), as :func:`audioclf.training.loop.train` records them.

    Args:
        patience: epochs without a new best after which training stops.
        min_epochs: the first epoch that may be kept as the best.
        tolerance: macro-F1 differences up to this are ties (:meth:`for_split`).
    """

    patience: int
    min_epochs: int = 1
    tolerance: float = 0.0

    @classmethod
    def for_split(cls, patience: int, min_epochs: int, n_files: int) -> EarlyStopping:
        """The rule for a validation split of ``n_files`` files: ties within one file's worth.

        >>> EarlyStopping.for_split(8, 10, n_files=20).tolerance
        0.05
        """
        return cls(patience, min_epochs, 1.0 / max(n_files, 1))

    def is_best(
        self, epoch: int, f1: float, loss: float, history: list[dict], best_epoch: int
    ) -> bool:
        """Whether ``epoch``, scoring ``f1`` and ``loss``, replaces epoch ``best_epoch`` of ``history``."""
        if epoch <= self.min_epochs:
            return True
        top = max(row["val_macro_f1"] for row in history if row["epoch"] >= self.min_epochs)
        if f1 > top:
            return True
        best = next((row for row in history if row["epoch"] == best_epoch), None)
        return best is not None and f1 >= top - self.tolerance and loss < best["val_loss"]

    def stops(self, epoch: int, best_epoch: int) -> bool:
        """Whether training ends after ``epoch`` (``best_epoch``: the best so far, this one included)."""
        return epoch - best_epoch >= self.patience

    def replay(self, f1s: list[float], losses: list[float]) -> tuple[int, int]:
        """The best epoch and the last epoch trained for per-epoch validation scores (1-based).

        >>> EarlyStopping(patience=2).replay([0.5, 0.4, 0.4, 0.9], [1.0, 0.9, 0.8, 0.7])
        (1, 3)
        >>> EarlyStopping(patience=2, min_epochs=2).replay([0.5, 0.4, 0.4, 0.9], [1.0, 0.9, 0.8, 0.7])
        (4, 4)
        """
        history: list[dict] = []
        best = 0
        for epoch, (f1, loss) in enumerate(zip(f1s, losses, strict=True), start=1):
            if self.is_best(epoch, f1, loss, history, best):
                best = epoch
            history.append({"epoch": epoch, "val_macro_f1": f1, "val_loss": loss})
            if self.stops(epoch, best):
                break
        return best, len(history)
