"""A drill's figures: what was injected, what the read-back found, what went wrong; chaos.json is this."""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field

from testkit.pipeline import ROOT


@dataclass
class Result:
    params: dict
    run_id: str
    topics: dict
    model_version: str
    events: int = 0
    valid: int = 0
    invalid: int = 0
    kills: int = 0
    broker_restarts: int = 0
    db_restarts: int = 0
    members_added: int = 0
    members_removed: int = 0
    db_outages: int = 0
    broker_outages: int = 0
    slow_db_windows: int = 0
    poison: dict = field(default_factory=dict)  # kind -> records in the flow
    poison_dead_lettered: dict = field(default_factory=dict)  # kind -> found where it belongs on the DLQ
    truncated_dead_letters: int = 0  # dead letters the DLQ refused whole: value cut, size and sha256 kept
    stuck_members: int = 0  # running members not consuming: out of the group, or holding partitions behind
    unexpected_exits: int = 0
    lost_log_entries: int = 0
    lost_predictions: int = 0
    lost_scored: int = 0
    lost_dead_letters: int = 0  # invalid inputs missing on the dead-letter topic or without their bytes
    duplicate_rows: int = 0  # log_entries + ml_predictions rows beyond one per input
    extra_rows: int = 0  # rows for coordinates that are not valid inputs
    duplicates_scored: int = 0
    extra_scored: int = 0
    duplicates_dead_letters: int = 0
    dead_letters: int = 0  # distinct inputs on the dead-letter topic
    rejected_by_database: int = 0  # valid inputs dead-lettered by the store stage
    # Content, not just coordinates: a batch merged or trimmed wrongly under faults would pair an event with
    # another event's scores. Each row/record is compared with the input decoded and scored afresh.
    wrong_rows: int = 0  # log_entries.message differs from the input's
    wrong_predictions: int = 0  # ml_predictions differ from scoring the input again
    wrong_scored: int = 0  # logs.scored records whose event or scores differ
    out_of_order_scored: int = 0  # logs.scored records first seen after a later one of their source partition
    committed_at_end: bool = False
    commits_backwards: int = 0  # times a partition's committed offset was seen below an earlier one
    wall_seconds: float = 0.0  # first member started .. the group committed the end
    verify_seconds: float = 0.0  # reading everything back
    produce_seconds: float = 0.0
    timeline: list = field(default_factory=list)
    exits: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    code: dict = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.lost_log_entries + self.lost_predictions + self.lost_scored + self.lost_dead_letters

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicate_rows == 0
            and self.extra_rows == 0
            and self.extra_scored == 0
            and self.stuck_members == 0
            and self.wrong_rows == 0
            and self.wrong_predictions == 0
            and self.wrong_scored == 0
            and self.committed_at_end
            and self.commits_backwards == 0
            and not self.problems
        )

    def to_json(self) -> dict:
        return {**asdict(self), "lost": self.lost, "ok": self.ok}


def code_state() -> dict:
    """The commit the drill ran, and whether the pipeline's files had uncommitted changes."""

    def git(*args) -> list[str]:
        try:
            out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [line.strip() for line in out.splitlines() if line.strip()]

    return {
        "commit": "".join(git("rev-parse", "--short", "HEAD")),
        "uncommitted": git("status", "--porcelain", "--", "streamer"),
    }
