"""Severity from a level and the anomaly flag, for a whole batch at once.

level ERROR/FATAL and anomaly -> critical      level ERROR/FATAL -> high
level WARN and anomaly        -> high          level WARN        -> medium
any other level and anomaly   -> medium        otherwise         -> low
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")


def severity(levels: Sequence[str | None], is_anomaly) -> list[str]:
    """One severity per row; levels are LEVELS names (None counts as "any other level")."""
    lv = np.asarray(levels, dtype=object)
    anom = np.asarray(is_anomaly, dtype=bool)
    if lv.shape != anom.shape:
        raise ValueError(f"{lv.shape[0]} levels for {anom.shape[0]} anomaly flags")
    if lv.size == 0:
        return []
    high = (lv == "ERROR") | (lv == "FATAL")
    warn = lv == "WARN"
    out = np.select(
        [high & anom, high, warn & anom, warn, anom], ["critical", "high", "high", "medium", "medium"], default="low"
    )
    return out.tolist()
