"""Device and precision choice, head/backbone learning rates, warm-up and schedules."""

import dataclasses

import pytest
import torch

from audioclf.config import ParamsError
from audioclf.config.training import TrainConfig
from audioclf.models.cnn import AudioCNN, CNNConfig
from audioclf.training.optim import (
    build_optimizer,
    build_scheduler,
    lr_factor,
    resolve_amp,
    steps_per_epoch,
)

CPU = torch.device("cpu")


def test_amp_is_off_on_cpu_and_explicit_half_precision_is_refused():
    assert resolve_amp("auto", CPU) is None and resolve_amp("off", CPU) is None
    with pytest.raises(ParamsError, match="'train.amp' is bf16, which needs a CUDA device"):
        resolve_amp("bf16", CPU)


def test_amp_on_cuda_chooses_half_precision():
    cuda = torch.device("cuda")
    assert resolve_amp("fp16", cuda) is torch.float16 and resolve_amp("off", cuda) is None
    assert resolve_amp("bf16", cuda) is torch.bfloat16


def test_head_trains_at_lr_and_backbone_at_the_multiple():
    model = AudioCNN(CNNConfig(channels=(4, 8), hidden=4), n_classes=3)
    opt = build_optimizer(model, TrainConfig(lr=0.01, backbone_lr_mult=0.1))
    backbone, head = opt.param_groups
    assert (backbone["name"], head["name"]) == ("backbone", "head")
    assert head["lr"] == 0.01 and backbone["lr"] == pytest.approx(0.001)
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    assert len(backbone["params"]) + len(head["params"]) == len(list(model.parameters()))


def test_warmup_then_cosine_to_zero():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, schedule="cosine")
    f = [lr_factor(s, cfg=cfg, steps_per_epoch=5) for s in range(50)]
    assert f[0] == pytest.approx(1 / 11) and f[9] == pytest.approx(
        10 / 11
    )  # linear ramp over 10 steps
    assert f[10] == pytest.approx(1.0)
    assert f[30] == pytest.approx(0.5)  # half-way through the cosine
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False)) and f[-1] < 0.01


def test_step_schedule_and_no_warmup_by_default():
    cfg = TrainConfig(epochs=30, schedule="step", step_epochs=10, step_gamma=0.1)
    assert cfg.warmup_epochs == 0
    assert [lr_factor(s * 4, cfg=cfg, steps_per_epoch=4) for s in (0, 9, 10, 25)] == pytest.approx(
        [1, 1, 0.1, 0.01]
    )


def test_scheduler_applies_factor_per_step():
    model = torch.nn.Linear(2, 2)
    model.head_prefix = ""
    cfg = TrainConfig(epochs=2, lr=1.0, schedule="constant", warmup_epochs=1)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=3)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[-1]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_steps_per_epoch_counts_accumulation():
    assert steps_per_epoch(100, TrainConfig(batch_size=32)) == 4
    assert steps_per_epoch(100, TrainConfig(batch_size=32, accumulate=3)) == 2


def test_bad_train_params_are_named():
    with pytest.raises(
        ParamsError, match="'train.schedule' is 'linear'; allowed values: constant, cosine, step"
    ):
        TrainConfig(schedule="linear")
    with pytest.raises(
        ParamsError, match="'train.amp' is 'fp32'; allowed values: auto, bf16, fp16, off"
    ):
        dataclasses.replace(TrainConfig(), amp="fp32")
    with pytest.raises(
        ParamsError, match=r"'train.warmup_epochs' must be in \[0, train.epochs=5\)"
    ):
        TrainConfig(epochs=5, warmup_epochs=5)
