import numpy as np
import pytest

from streamer.ml.severity import severity

TABLE = [
    ("FATAL", True, "critical"),
    ("ERROR", True, "critical"),
    ("FATAL", False, "high"),
    ("ERROR", False, "high"),
    ("WARN", True, "high"),
    ("WARN", False, "medium"),
    ("INFO", True, "medium"),
    ("DEBUG", True, "medium"),
    (None, True, "medium"),
    ("INFO", False, "low"),
    ("DEBUG", False, "low"),
    (None, False, "low"),
]


@pytest.mark.parametrize("level,anomaly,expected", TABLE)
def test_rule(level, anomaly, expected):
    assert severity([level], [anomaly]) == [expected]


def test_whole_batch_at_once():
    levels = [t[0] for t in TABLE]
    flags = np.array([t[1] for t in TABLE])
    assert severity(levels, flags) == [t[2] for t in TABLE]


def test_empty_and_mismatched():
    assert severity([], []) == []
    with pytest.raises(ValueError):
        severity(["INFO"], [True, False])
