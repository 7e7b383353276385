"""The measures bench.quality prints (no Loghub data needed): ECE, grouping accuracy, F1."""

import pytest

from bench.quality import _f1, calibration, ece
from bench.templates import grouping, grouping_accuracy


def test_ece_is_the_bin_weighted_gap_between_confidence_and_accuracy():
    assert ece([1.0, 1.0], [True, True]) == 0.0
    # one bin [0.9, 1.0): confidence 0.95, accuracy 0.5 -> 0.45
    assert ece([0.95, 0.95], [True, False]) == pytest.approx(0.45)
    # two bins, half the rows each: |1 - 0.55| / 2 + |0 - 0.15| / 2
    assert ece([0.55, 0.15], [True, False]) == pytest.approx((0.45 + 0.15) / 2)
    c = calibration([0.95, 0.95, 0.2], [True, True, False])
    assert c["share_at_0.9"] == pytest.approx(2 / 3, abs=1e-4) and c["accuracy_at_0.9"] == 1.0


def test_grouping_accuracy_counts_lines_whose_group_is_exactly_right():
    truth = ["a", "a", "b", "b", "c"]
    assert grouping_accuracy(truth, [1, 1, 2, 2, 3]) == 1.0
    assert grouping_accuracy(truth, [1, 1, 1, 1, 3]) == pytest.approx(1 / 5)  # a and b merged: only c right
    assert grouping_accuracy(truth, [1, 2, 3, 3, 4]) == pytest.approx(3 / 5)  # a split: b and c right


def test_f1_and_missing_data():
    assert _f1([True, False, True], [True, False, False]) == pytest.approx(2 / 3, abs=1e-4)
    assert grouping("no-such-system") is None
