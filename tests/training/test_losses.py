"""Losses against torch's cross-entropy and hand-computed values; class-weight methods."""

import math

import pytest
import torch

from audioclf.config import ParamsError
from audioclf.training.losses import (
    CEConfig,
    FocalConfig,
    FocalLoss,
    SoftCrossEntropy,
    WeightedCEConfig,
    build_loss,
    class_weights,
)

TOL = dict(rtol=1e-6, atol=1e-7)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 3, 0, 0])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_soft_ce_equals_torch_on_index_targets(batch, smoothing, weighted):
    logits, y = batch
    w = torch.tensor([0.5, 1.0, 2.0, 4.0]) if weighted else None
    ref = torch.nn.CrossEntropyLoss(weight=w, label_smoothing=smoothing)(logits, y)
    torch.testing.assert_close(SoftCrossEntropy(w, smoothing)(logits, y), ref, **TOL)


def test_soft_ce_one_hot_equals_index(batch):
    logits, y = batch
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    one_hot = torch.nn.functional.one_hot(y, 4).float()
    torch.testing.assert_close(
        SoftCrossEntropy(w)(logits, one_hot), SoftCrossEntropy(w)(logits, y), **TOL
    )


def test_soft_ce_by_hand_on_mixed_target():
    # logits (0, ln 3): p = (1/4, 3/4); target 0.3/0.7; weights 2 and 1
    logits = torch.tensor([[0.0, math.log(3)]])
    target = torch.tensor([[0.3, 0.7]])
    expected = -(0.3 * 2 * math.log(0.25) + 0.7 * 1 * math.log(0.75)) / (0.3 * 2 + 0.7 * 1)
    assert SoftCrossEntropy(torch.tensor([2.0, 1.0]))(logits, target).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_focal_by_hand():
    # logits (2, 0, 0), class 0: p = e^2 / (e^2 + 2)
    p = math.exp(2) / (math.exp(2) + 2)
    logits, y = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])
    expected = -((1 - p) ** 2) * math.log(p)
    assert FocalLoss(gamma=2.0)(logits, y).item() == pytest.approx(expected, rel=1e-6)
    alpha = torch.tensor([0.25, 1.0, 1.0])
    assert FocalLoss(2.0, alpha)(logits, y).item() == pytest.approx(0.25 * expected, rel=1e-6)


def test_focal_gamma_zero_is_cross_entropy(batch):
    logits, y = batch
    torch.testing.assert_close(
        FocalLoss(gamma=0.0)(logits, y), torch.nn.functional.cross_entropy(logits, y), **TOL
    )


def test_focal_down_weights_easy_examples():
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    y = torch.tensor([0])
    ce, fl = torch.nn.functional.cross_entropy, FocalLoss(2.0)
    assert fl(easy, y) / ce(easy, y) < fl(hard, y) / ce(hard, y)


@pytest.mark.parametrize(
    "method, expected",
    [
        ("balanced", [50 / (2 * 10), 50 / (2 * 40)]),  # N / (C n_c): 2.5, 0.625
        ("inverse", [1.6, 0.4]),  # (1/10, 1/40) scaled to mean 1
        ("sqrt", [4 / 3, 2 / 3]),  # (1/sqrt(10), 1/sqrt(40)) = ratio 2, mean 1
    ],
)
def test_weight_methods(method, expected):
    torch.testing.assert_close(
        class_weights(torch.tensor([10, 40]), method), torch.tensor(expected), **TOL
    )


def test_weight_ranges_follow_the_imbalance():
    counts = torch.tensor([5, 20, 80])
    ratio = {
        m: (w.max() / w.min()).item()
        for m in ("balanced", "inverse", "sqrt")
        for w in [class_weights(counts, m)]
    }
    assert ratio["balanced"] == pytest.approx(16) and ratio["inverse"] == pytest.approx(16)
    assert ratio["sqrt"] == pytest.approx(4)
    balanced = class_weights(counts, "balanced")
    assert (balanced[torch.arange(3).repeat_interleave(counts)]).mean().item() == pytest.approx(1.0)


def test_absent_class_gets_a_finite_weight():
    assert torch.isfinite(class_weights(torch.tensor([0, 10]), "inverse")).all()


def test_build_loss_reports_weight_range():
    counts = torch.tensor([10, 40])
    loss, info = build_loss("weighted_ce", WeightedCEConfig(weights="balanced"), counts)
    assert info == pytest.approx({"class_weight_min": 0.625, "class_weight_max": 2.5})
    assert build_loss("ce", CEConfig(), counts)[1] == {}
    assert build_loss("focal", FocalConfig(alpha="sqrt"), counts)[1][
        "class_weight_max"
    ] == pytest.approx(4 / 3)


def test_bad_loss_params_are_named():
    with pytest.raises(
        ParamsError, match="'loss_params.weighted_ce.weights' is 'log'; allowed values: balanced"
    ):
        WeightedCEConfig(weights="log")
    with pytest.raises(
        ParamsError, match=r"'loss_params.focal.label_smoothing' must be in \[0, 1\)"
    ):
        FocalConfig(label_smoothing=1.0)
