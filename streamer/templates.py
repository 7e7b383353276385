"""Log templates mined from the stream: each event's message → (template id, template text) per service.

drain3 clusters masked messages per service. The id is a hash of service + template text, so every member of
a consumer group (and a restarted process) names the same template the same way; drain3's cluster ids are
process-local and are never stored. drain3 may generalise a cluster's template as more messages arrive: we
keep the template a masked text was first given (cached by masked text), so an event's id never drifts within
a process; a generalised template is a new row in log_templates (documented in README "Templates").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

# Masks applied before clustering: variable parts that would otherwise make every line its own template.
_MASKS = (
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "UUID"),
    (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", "IP"),
    (r"\b0x[0-9a-fA-F]+\b", "HEX"),
    (r"(?<![A-Za-z])[-+]?\d+(?:\.\d+)?(?![A-Za-z])", "NUM"),
)

# Bounds the per-service cache of masked text → template so a stream of unique lines cannot grow memory forever.
_CACHE_LIMIT = 100_000


def template_id(service: str, template: str) -> str:
    """Deterministic across processes: the same service and template text give the same id everywhere."""
    return hashlib.sha256(f"{service}\0{template}".encode()).hexdigest()[:16]


def _new_miner() -> TemplateMiner:
    config = TemplateMinerConfig()
    config.masking_instructions = [MaskingInstruction(pattern, name) for pattern, name in _MASKS]
    config.profiling_enabled = False
    return TemplateMiner(config=config)


class TemplateMiners:
    """One drain3 miner per service, with a cache by masked text so repeated lines skip clustering."""

    def __init__(self):
        self._miners: dict[str, TemplateMiner] = {}
        self._cache: dict[str, dict[str, str]] = {}
        # Templates this process has already seen per service; the database decides "new" across the group.
        self._seen: dict[str, set[str]] = {}

    def template_of(self, service: str | None, message: str) -> tuple[str, str]:
        """(template id, template text) for one message."""
        service = service or ""
        miner = self._miners.get(service)
        if miner is None:
            miner = self._miners[service] = _new_miner()
            self._cache[service] = {}
        masked = miner.masker.mask(message)
        cache = self._cache[service]
        template = cache.get(masked)
        if template is None:
            template = miner.add_log_message(message)["template_mined"]
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[masked] = template
        return template_id(service, template), template


@dataclass
class TemplateCount:
    service: str
    template: str
    first_seen: datetime
    last_seen: datetime
    count: int = 0


@dataclass
class BatchTemplates:
    """Per-batch template counts: one upsert per distinct template per batch."""

    counts: dict[str, TemplateCount] = field(default_factory=dict)

    def add(self, service: str | None, tid: str, template: str, seen_at: datetime) -> None:
        entry = self.counts.get(tid)
        if entry is None:
            entry = self.counts[tid] = TemplateCount(service or "", template, seen_at, seen_at)
        entry.first_seen = min(entry.first_seen, seen_at)
        entry.last_seen = max(entry.last_seen, seen_at)
        entry.count += 1


# Redelivery after a crash replays a batch: counts then include it twice (rows are never duplicated; the
# log_entries key prevents that). xmax = 0 tells a freshly inserted row — a template new to the whole group.
UPSERT_SQL = """
INSERT INTO log_templates (template_id, service, template, first_seen, last_seen, count)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (template_id) DO UPDATE SET
    count = log_templates.count + excluded.count,
    first_seen = least(log_templates.first_seen, excluded.first_seen),
    last_seen = greatest(log_templates.last_seen, excluded.last_seen)
RETURNING template_id, (xmax = 0) AS inserted
"""


def upsert(cursor, batch: BatchTemplates) -> set[str]:
    """Upsert a batch's templates inside the caller's transaction; returns the ids new to the group."""
    new_ids: set[str] = set()
    for tid in sorted(batch.counts):  # a fixed order so concurrent members cannot deadlock on row locks
        entry = batch.counts[tid]
        cursor.execute(UPSERT_SQL, (tid, entry.service, entry.template, entry.first_seen, entry.last_seen,
                                    entry.count))
        row = cursor.fetchone()
        if row and row[1]:
            new_ids.add(tid)
    return new_ids
