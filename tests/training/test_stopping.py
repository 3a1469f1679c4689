"""Early stopping on a small, noisy validation split (:mod:`audioclf.training.stopping`)."""

import pytest

from audioclf.config import parse_params
from audioclf.training.stopping import EarlyStopping

# 18 validation files, as one fold of a 91-recording bird set: macro-F1 jumps to its plateau by
# epoch 3 and then wobbles by a file or so, while the validation loss keeps falling to epoch 16
F1 = [0.20, 0.45, 0.72, 0.66, 0.70, 0.68, 0.72, 0.69, 0.71, 0.70, 0.72, 0.70, 0.71, 0.72, 0.71]
F1 += [0.72, 0.70, 0.71, 0.69, 0.70, 0.68, 0.70, 0.69, 0.68, 0.69, 0.70, 0.68, 0.69, 0.70, 0.69]
LOSS = [2.0, 1.6, 1.30, 1.25, 1.20, 1.15, 1.10, 1.05, 1.00, 0.96, 0.93, 0.90, 0.88, 0.86, 0.85]
LOSS += [0.84, 0.86, 0.88, 0.90, 0.93, 0.96, 1.00, 1.04, 1.08, 1.12, 1.16, 1.20, 1.24, 1.28, 1.3]


def strict_f1(f1s: list[float], patience: int = 8) -> tuple[int, int]:
    """The rule it replaces: the strictly highest macro-F1, stop ``patience`` epochs after it."""
    best = 1
    for epoch in range(1, len(f1s) + 1):
        if f1s[epoch - 1] > f1s[best - 1]:
            best = epoch
        if epoch - best >= patience:
            return best, epoch
    return best, len(f1s)


def test_a_plateau_of_macro_f1_with_a_falling_loss_keeps_training():
    assert strict_f1(F1) == (3, 11)  # the collapsed fold: best at epoch 3, stopped at 11
    rule = EarlyStopping.for_split(patience=8, min_epochs=10, n_files=18)
    best, stopped = rule.replay(F1, LOSS)
    assert best == 16  # the lowest loss on the plateau
    assert F1[best - 1] == max(F1)
    assert stopped == best + 8


def test_a_tie_never_drifts_below_the_highest_macro_f1_by_more_than_the_tolerance():
    # each epoch a file worse than the last yet with a lower loss: a chain of ties
    f1s = [0.80 - 0.04 * k for k in range(8)]
    losses = [1.0 - 0.05 * k for k in range(8)]
    best, _ = EarlyStopping(patience=3, min_epochs=1, tolerance=0.05).replay(f1s, losses)
    assert best == 2 and max(f1s) - f1s[best - 1] <= 0.05


def test_no_epoch_before_min_epochs_is_kept_and_a_clear_gain_wins_over_a_lower_loss():
    f1s = [0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    losses = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.5, 0.6, 0.7]
    rule = EarlyStopping(patience=2, min_epochs=6, tolerance=0.05)
    assert rule.replay(f1s, losses) == (7, 9)  # epoch 1 is not watched; 7: a tie, lower loss
    assert EarlyStopping(patience=2).replay(f1s, losses) == (1, 3)


# fold 5 of EmoDB's leave-one-speaker-out on 120 files (12 per speaker), as logged with
# min_epochs 15: on its small validation split an untrained epoch 2 scores highest for 16 epochs,
# loss and macro-F1 alike; then the network learns what the other speakers share. Keeping epoch 2
# (the rule before min_epochs was watched) left the fold's test macro-F1 at 0.036, against 0.114
COLLAPSE_F1 = [0.0571, 0.1103, 0.0114, 0.0114, 0.0114, 0.0114, 0.0114, 0.0114, 0.0114, 0.0114]
COLLAPSE_F1 += [0.0487, 0.0670, 0.0618, 0.0630, 0.0599, 0.0641, 0.1134, 0.1984, 0.1650, 0.2050]
COLLAPSE_F1 += [0.2832, 0.2832, 0.2717, 0.2717, 0.2317, 0.2317, 0.2317, 0.2317, 0.2317, 0.2317]
COLLAPSE_LOSS = [1.9369, 1.9368, 1.9510, 1.9873, 2.0501, 2.1332, 2.1943, 2.2354, 2.2630, 2.2782]
COLLAPSE_LOSS += [2.2495, 2.2470, 2.2447, 2.2037, 2.1992, 2.1325, 1.9732, 1.8809, 1.8710, 1.8767]
COLLAPSE_LOSS += [1.8486, 1.7881, 1.7293, 1.6938, 1.6738, 1.6612, 1.6534, 1.6480, 1.6423, 1.6379]


def test_an_untrained_early_epoch_that_a_tiny_validation_split_scores_highest_is_not_kept():
    rule = EarlyStopping.for_split(patience=8, min_epochs=8, n_files=12)  # 30 epochs' default
    assert EarlyStopping.for_split(8, 1, n_files=12).replay(COLLAPSE_F1, COLLAPSE_LOSS)[0] == 2
    best, stopped = rule.replay(COLLAPSE_F1, COLLAPSE_LOSS)
    assert best >= 21 and COLLAPSE_F1[best - 1] >= max(COLLAPSE_F1) - 1 / 12
    assert stopped == len(COLLAPSE_F1)
    assert rule.replay([0.5] * 20, [1.0 - 0.01 * k for k in range(20)]) == (20, 20)


def test_min_epochs_is_validated_and_defaults_to_a_quarter_of_the_run(raw_params):
    assert parse_params(raw_params).train.watched_from == -(-raw_params["train"]["epochs"] // 4)
    raw_params["train"]["min_epochs"] = 0
    with pytest.raises(ValueError, match=r"train\.min_epochs"):
        parse_params(raw_params)
