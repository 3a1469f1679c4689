"""The training benchmark runs the training step on 1 and 2 processes over a random feature table
of the front-end's shape (its speed figures are printed, never asserted)."""

import numpy as np
import pytest
import yaml
from tests.conftest import repo_params, shrink

from audioclf.config import parse_params
from audioclf.devtools import train_benchmark as bench
from audioclf.features.table import FeatureTable


def test_the_random_table_is_a_feature_table_of_the_front_ends_shape(tmp_path):
    shape = parse_params(shrink(repo_params())).features.shape  # (1, 32, 63)
    table = FeatureTable(bench.random_table(tmp_path / "t", 300, shape, 6))
    assert table.data.shape == (300, *shape) and len(table.labels) == 6
    assert len(set(table.indices([r.path for r in table.rows[:10]]))) == 10
    assert np.isfinite(table.data).all() and abs(float(table.data.mean())) < 0.05


@pytest.mark.slow
def test_one_and_two_processes_are_measured(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(shrink(repo_params())))
    rows = bench.main(
        ["--devices", "1", "2", "--device", "cpu", "--steps", "3", "--warmup", "1"]
        + ["--batch-size", "8", "--params", str(tmp_path / "params.yaml")]
    )
    assert [r["processes"] for r in rows] == [1, 2]
    assert all(r["samples_per_s"] > 0 for r in rows) and rows[0]["efficiency"] == 1.0
