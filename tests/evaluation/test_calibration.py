import numpy as np
import pytest

from audioclf.evaluation.calibration import bin_index, expected_calibration_error, reliability_bins

# confidences .55 (right), .65 (wrong), .95 (right), .95 (wrong); 5 bins of 0.2
Y = np.array([0, 1, 1, 0])
P = np.array([[0.55, 0.45], [0.65, 0.35], [0.05, 0.95], [0.05, 0.95]])


def test_reliability_bins_golden():
    bins = reliability_bins(Y, P, n_bins=5)
    np.testing.assert_allclose(bins.edges, [0, 0.2, 0.4, 0.6, 0.8, 1])
    np.testing.assert_array_equal(bins.count, [0, 0, 1, 1, 2])
    np.testing.assert_allclose(bins.accuracy[2:], [1, 0, 0.5])
    np.testing.assert_allclose(bins.confidence[2:], [0.55, 0.65, 0.95])
    assert np.isnan(bins.accuracy[:2]).all()  # empty bins carry no value, and no weight


def test_ece_golden():
    # 1/4 |1 - .55| + 1/4 |0 - .65| + 2/4 |.5 - .95|
    assert expected_calibration_error(Y, P, n_bins=5) == pytest.approx(0.5)
    # one bin: |accuracy - mean confidence| = |.5 - .775|
    assert expected_calibration_error(Y, P, n_bins=1) == pytest.approx(0.275)


def test_perfectly_calibrated_bins_give_zero():
    # in each bin the accuracy equals the confidence: .75 with 3 of 4 right, 1.0 all right
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([[0.75, 0.25]] * 4 + [[0.0, 1.0]] * 2)
    assert expected_calibration_error(y, p, n_bins=15) == pytest.approx(0.0)


def test_bins_are_closed_on_the_right():
    assert bin_index(np.array([0.0, 0.2, 0.2000001, 1.0]), 5).tolist() == [0, 0, 1, 4]


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(probs=np.array([[1.5, -0.5]])), r"probabilities in \[0, 1\]"),
        (dict(n_bins=0), "n_bins must be >= 1, got 0"),
    ],
)
def test_validation_messages(bad, message):
    args = {"y_true": Y[:1], "probs": P[:1], "n_bins": 15, **bad}
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(**args)
