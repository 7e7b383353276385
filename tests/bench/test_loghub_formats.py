"""Every raw line of every Loghub system: level and message agree with Loghub's structured CSV (research data,
read for the test only; skipped when ../shared/data/loghub is absent)."""

import pytest

from bench.formats import LOGHUB, agreement

if not LOGHUB.is_dir():
    pytest.skip(f"Loghub research data not found at {LOGHUB}", allow_module_level=True)

# All 14 systems. Below 100 %, and why (bench/results/formats.md): Mac 99.7 (the CSV lost the commas of
# `{{0, 0}, {400, 400}}`; `WARNING:` read as the level), Thunderbird 99.7 (kernel lines without a tag, which Loghub
# splits at their first colon).
SYSTEMS = [
    "Android",
    "Apache",
    "BGL",
    "HDFS",
    "HPC",
    "HealthApp",
    "Linux",
    "Mac",
    "OpenSSH",
    "OpenStack",
    "Proxifier",
    "Spark",
    "Thunderbird",
    "Windows",
]


@pytest.mark.parametrize("system", SYSTEMS)
def test_level_and_message_agree(system):
    lines, level, message = agreement(LOGHUB / system)
    assert lines == 2000
    assert message >= 99.0
    assert level is None or level >= 99.0  # Loghub gives no level for 7 of them: message only
