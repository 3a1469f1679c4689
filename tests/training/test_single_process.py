"""One process trains exactly as before data-parallel training existed.

``golden/single_process.json`` holds the histories of two short trainings on the shrunk
synthetic set (one with augmentation, dropout and gradient accumulation, one with the
class-balanced sampler and a weighted loss), recorded with the single-process code before
:mod:`audioclf.training.distributed` was added. Every random stream, batch order and
optimizer step of one process must stay as it was, so the histories must agree: the counts
(accuracy, macro-F1) exactly, the float sums to 1e-6 (another CPU's BLAS may round the
last bits differently).
"""

import dataclasses
import json
from pathlib import Path

import pytest
from tests.conftest import repo_params, shrink

from audioclf.config import parse_params
from audioclf.config.training import AugmentConfig, MixupConfig, SpecAugmentConfig
from audioclf.features.table import FeatureTable
from audioclf.training.loop import train

GOLDEN = Path(__file__).parent / "golden" / "single_process.json"
pytestmark = pytest.mark.usefixtures("one_thread")


def configs() -> dict:
    params = parse_params(shrink(repo_params()))
    # recorded before train.ema existed: the last step's weights are the validated ones
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, ema=0.0))
    augmented = dataclasses.replace(
        params,
        train=dataclasses.replace(params.train, epochs=3, patience=3, accumulate=2),
        augment=AugmentConfig(
            specaugment=SpecAugmentConfig(p=0.5, freq_width=4, time_width=4),
            mixup=MixupConfig(p=0.5),
        ),
    )
    balanced = dataclasses.replace(
        params,
        loss="weighted_ce",
        train=dataclasses.replace(params.train, epochs=2, sampler="balanced"),
    )
    return {"augmented": augmented, "balanced": balanced}


def histories(cache: Path, splits: dict, out: Path) -> dict:
    table = FeatureTable(cache)
    tr, va = ([e.path for e in splits[k]] for k in ("train", "val"))
    return {
        name: train(params.train_spec(), table, tr, va, out / f"{name}.pt", lambda m, s: None)[
            "history"
        ]
        for name, params in configs().items()
    }


def test_one_process_gives_the_recorded_histories(tiny_cache, tmp_path):
    cache, splits = tiny_cache
    golden = json.loads(GOLDEN.read_text())
    got = histories(cache, splits, tmp_path)
    assert set(got) == set(golden)
    for name, rows in golden.items():
        assert len(got[name]) == len(rows), name
        for mine, theirs in zip(got[name], rows, strict=True):
            assert mine.keys() == theirs.keys()
            for key in (
                "epoch",
                "train_accuracy",
                "train_macro_f1",
                "val_accuracy",
                "val_macro_f1",
            ):
                assert mine[key] == theirs[key], (name, mine["epoch"], key)
            for key in ("train_loss", "val_loss", "lr", "grad_norm"):
                assert mine[key] == pytest.approx(theirs[key], rel=1e-6), (name, mine["epoch"], key)
