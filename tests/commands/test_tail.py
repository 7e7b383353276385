"""streamer tail prints the scored events at or above a severity, as an alerting consumer would."""

import subprocess
import sys

import orjson
import pytest

from testkit.clients import produce

pytestmark = pytest.mark.integration


def scored(message, severity, offset):
    return orjson.dumps(
        {
            "message": message,
            "streamer": {
                "predicted_level": "ERROR",
                "level_confidence": 0.9,
                "is_anomaly": severity == "critical",
                "anomaly_score": 0.97,
                "severity": severity,
                "model_version": "m-1",
                "source": {"topic": "logs.raw", "partition": 0, "offset": offset},
            },
        }
    )


def test_tail_prints_alerts_at_or_above_the_severity(kafka_bootstrap, topics):
    produce(
        kafka_bootstrap,
        topics.scored,
        [
            scored("all good", "low", 1),
            scored("disk almost full", "medium", 2),
            b"not a streamer record",
            scored("payment service down", "high", 3),
            scored("kernel panic", "critical", 4),
        ],
        partition=0,
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer",
            "tail",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topics.scored,
            "--group-id",
            topics.group,
            "--from-beginning",
            "--min-severity",
            "high",
            "--max-events",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("HIGH") and "payment service down" in lines[0] and "logs.raw[0]@3" in lines[0]
    assert lines[1].startswith("CRITICAL") and "kernel panic" in lines[1]
