import numpy as np
import pytest
from tests.conftest import repo_params

from audioclf.config import ParamsError, parse_params
from audioclf.evaluation.buckets import assign_buckets, bucket_f1, bucket_summary, training_counts


def test_assignment_at_the_thresholds():
    counts = np.array([25, 20, 19.5, 6, 5.5, 5, 0])
    assert assign_buckets(counts, head=20, tail=5).tolist() == [
        "head",
        "head",
        "mid",
        "mid",
        "mid",
        "tail",
        "tail",
    ]
    with pytest.raises(ValueError, match="0 <= tail < head, got head=5, tail=5"):
        assign_buckets(counts, head=5, tail=5)


def test_training_counts_average_folds_and_need_the_fold_format():
    report = {
        "folds": [
            {"per_class": {"a": {"train": 30, "test": 3}, "b": {"train": 2}}},
            {"per_class": {"a": {"train": 28}, "b": {"train": 4}, "c": {"test": 1}}},
        ]
    }
    assert training_counts(report) == {"a": 29.0, "b": 3.0, "c": 0.0}
    with pytest.raises(ValueError, match="rerun: dvc repro split"):
        training_counts({"per_class": {"a": {"train": 3}}})  # the pre-cross-validation format


def test_bucket_f1_skips_classes_without_test_items():
    f1 = np.array([0.9, 0.7, 0.5, 0.0, 0.2])
    support = np.array([10, 8, 4, 0, 2])
    bucket_of = np.array(["head", "head", "mid", "tail", "tail"])
    assert bucket_f1(f1, support, bucket_of) == pytest.approx(
        {"head_macro_f1": 0.8, "mid_macro_f1": 0.5, "tail_macro_f1": 0.2}
    )
    # a bucket whose classes have no test items gets no score, not NaN
    assert "tail_macro_f1" not in bucket_f1(f1, np.array([10, 8, 4, 0, 0]), bucket_of)


def test_bucket_summary_golden():
    summary = bucket_summary(
        np.array([0.9, 0.7, 0.5, 0.2]),
        np.array([10, 8, 4, 2]),
        np.array([40.0, 22.0, 9.0, 3.0]),
        np.array(["head", "head", "mid", "tail"]),
    )
    assert summary["head"] == pytest.approx(
        {"classes": 2, "test_support": 18, "train_min": 22.0, "train_max": 40.0, "macro_f1": 0.8}
    )
    assert summary["tail"]["macro_f1"] == pytest.approx(0.2) and summary["tail"]["classes"] == 1


def test_bucket_params_are_validated():
    raw = repo_params()
    assert parse_params(raw).evaluate.buckets.head == 20
    raw["evaluate"]["buckets"] = {"head": 5, "tail": 8}
    with pytest.raises(ParamsError, match=r"'evaluate.buckets.head' must be > tail \(8\), got 5"):
        parse_params(raw)
