"""Log templates mined from the stream: each event's message → (template id, template text) per service.

drain3 clusters masked messages per service. The id is a hash of service + template text, so every member of
a consumer group (and a restarted process) names the same template the same way; drain3's cluster ids are
process-local and are never stored. drain3 may generalise a cluster's template as more messages arrive: we
keep the template a masked text was first given (cached by masked text), so an event's id never drifts within
a process; a generalised template is a new row in log_templates (documented in README "Templates").

Members share what they mined through log_templates: each seeds its miners with the table's templates at
start and every minute, so a message another member already mined gets that member's template here.
The statistics (count, first/last seen) are written by streamer.sink in each batch's transaction.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from drain3.drain import Drain, LogCluster

from streamer.db import one
from streamer.errors import one_line
from streamer.ml.features import PLACEHOLDERS, mask_batch

log = logging.getLogger(__name__)

# Bounds the cache of (service, masked text) → template so a stream of unique lines cannot grow memory forever.
_CACHE_LIMIT = 100_000


def template_id(service: str, template: str) -> str:
    """Deterministic across processes: the same service and template text give the same id everywhere."""
    return hashlib.sha256(f"{service}\0{template}".encode()).hexdigest()[:16]


def _new_miner() -> Drain:
    return Drain(depth=4, sim_th=0.4, max_children=100)  # drain3's TemplateMiner defaults


def _shown(tokens) -> str:
    """A template as stored and shown: the masks' placeholder words as <NUM>, <IP>, <UUID>..."""
    return " ".join(f"<{t[1:].upper()}>" if t in PLACEHOLDERS else t for t in tokens)


def _tokens(template: str) -> list[str]:
    """The inverse of _shown: the words drain3 clustered."""
    out = []
    for t in template.split():
        word = "x" + t[1:-1].lower() if t.startswith("<") and t.endswith(">") else t
        out.append(word if word in PLACEHOLDERS else t)
    return out


class TemplateMiners:
    """One drain3 miner per service, clustering the masked text of streamer.ml.features (one regex pass over
    the whole batch, lower-cased, variables as placeholder words): drain3's own per-message masking would cost
    twice the clustering. Only the first occurrence of a masked message is clustered; later ones are a dict
    lookup by (service, masked text)."""

    def __init__(self, refresh_interval: float = 60.0, clock=time.monotonic):
        self._miners: dict[str, Drain] = {}
        self._cache: dict[tuple[str, str], tuple[str, str, str]] = {}  # (service, masked) -> (id, template, service)
        self._known: set[str] = set()  # ids that are clusters of this process's miners (mined or seeded)
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._next_refresh = clock()  # due at once: the first batch loads what the group knows
        self._loaded_up_to: datetime | None = None  # the database's now() at the last refresh
        self._failing = False

    def __len__(self) -> int:
        """Templates known to this process (mined here or learnt from log_templates)."""
        return len(self._known)

    def _miner(self, service: str) -> Drain:
        miner = self._miners.get(service)
        if miner is None:
            miner = self._miners[service] = _new_miner()
        return miner

    def _mine(self, service: str, masked: str) -> tuple[str, str]:
        cluster, _ = self._miner(service).add_log_message(masked)
        template = _shown(cluster.log_template_tokens)
        tid = template_id(service, template)
        self._known.add(tid)
        return tid, template

    def template_of(self, service: str | None, message: str) -> tuple[str, str]:
        """(template id, template text) for one message."""
        return self.assign([service], [message]).of(0)

    def assign(self, services, messages) -> EventTemplates:
        """The template of every message of a batch (services[i] may be None: the empty service)."""
        messages = list(messages)
        keys = mask_batch(messages).split(_SEP) if messages else []
        if len(keys) != len(messages):  # cannot happen (the separator survives masking); stay correct anyway
            keys = [mask_batch([m]) for m in messages]
        cache = self._cache
        pairs = [(service or "", key) for service, key in zip(services, keys)]
        hits = list(map(cache.get, pairs))  # C-level lookups; Python only for the misses
        if None in hits:
            for i, hit in enumerate(hits):
                if hit is None:
                    hit = cache.get(pairs[i])  # mined earlier in this batch
                    if hit is None:
                        if len(cache) >= _CACHE_LIMIT:
                            cache.clear()
                        service = pairs[i][0]
                        hit = cache[pairs[i]] = (*self._mine(service, pairs[i][1]), service)
                    hits[i] = hit
        mined = cast("list[tuple[str, str, str]]", hits)  # every miss was mined above: no None is left
        ids = [hit[0] for hit in mined]
        texts = {tid: (service, template) for tid, template, service in set(mined)}
        return EventTemplates(ids, texts)

    def seed(self, service: str, template: str) -> bool:
        """Make a template another member (or an earlier run) mined a cluster of this service's miner, as it
        is: a message it fits is then given the same template here. False when already known."""
        service = service or ""
        tid = template_id(service, template)
        if tid in self._known:
            return False
        drain = self._miner(service)
        tokens = _tokens(template)
        drain.clusters_counter += 1
        cluster = LogCluster(tokens, drain.clusters_counter)
        drain.id_to_cluster[cluster.cluster_id] = cluster
        drain.add_seq_to_prefix_tree(drain.root_node, cluster)
        self._known.add(tid)
        return True

    def load(self, conn, since: datetime | None = None) -> int:
        """Seed the miners with the group's templates (first seen since `since`, most counted first); returns
        how many were new here."""
        rows = conn.execute(_LOAD_SQL, (since, since, _LOAD_LIMIT)).fetchall()
        return sum(self.seed(service, template) for service, template in rows)

    def refresh(self, database_url: str) -> None:
        """Every refresh_interval seconds (the first call at once), load the templates other members created
        since the last refresh. A failure is logged and retried later: it only delays the sharing."""
        now = self._clock()
        if now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_interval
        import psycopg

        try:
            with psycopg.connect(database_url, connect_timeout=2) as conn:
                conn.execute("SET statement_timeout = 5000")  # not options=: it would replace the URL's
                db_now = one(conn, "SELECT now()")[0]
                # A batch's first_seen is its transaction's start: look back past the longest transaction.
                since = None if self._loaded_up_to is None else self._loaded_up_to - _REFRESH_OVERLAP
                seeded = self.load(conn, since)
        except psycopg.Error as err:
            if not self._failing:  # once per outage: the pipeline's own retries say the rest
                log.warning(
                    "could not load the group's templates (retried every %.0fs): %s",
                    self.refresh_interval,
                    one_line(err),
                )
            self._failing = True
            return
        self._failing = False
        self._loaded_up_to = db_now
        if seeded:
            log.info("learnt %d template(s) from log_templates", seeded)


# Rows of log_templates seeded per refresh at most (the most counted first).
_LOAD_LIMIT = 50_000
_LOAD_SQL = """
SELECT service, template FROM log_templates WHERE %s::timestamptz IS NULL OR first_seen >= %s::timestamptz
ORDER BY count DESC LIMIT %s"""
_REFRESH_OVERLAP = timedelta(minutes=2)
# streamer.ml.features joins a batch's messages with this before masking; no mask matches it.
_SEP = "\n\x01\n"


@dataclass
class EventTemplates:
    """The templates of one batch's events: ids[i] is event i's; texts maps id -> (service, template).
    new_keys: the (topic, partition, offset, record_index) of events whose template the batch's database
    transaction created — the first such event of each (set by streamer.sink.PostgresSink.write)."""

    ids: list[str]
    texts: dict[str, tuple[str, str]]
    new_keys: set[tuple] = field(default_factory=set)

    def of(self, i: int) -> tuple[str, str]:
        tid = self.ids[i]
        return tid, self.texts[tid][1]
