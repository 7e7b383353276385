"""Log templates mined from the stream: each event's message → (template id, template text) per service.

A message is masked (one regex pass over the batch: dates, UUIDs, IPs, host names, times, durations, sizes,
hex, numbers and booleans become <DATE>, <UUID>, <IP>, <HOST>, <TIME>, <DUR>, <SIZE>, <HEX>, <NUM>, <BOOL>, each one token so the line keeps
its length), then clustered by drain3 per service (depth 5, similarity 0.7; a placeholder counts as matching
a wildcard, and two different plain words only merge when there is one such pair and neither is capitalised:
`VM Paused`/`VM Resumed` stay two templates, `for user root`/`for user news` become one). Chosen on the
Loghub 2k samples, bench/results/quality.md "Template grouping accuracy".

The id is the cluster's, made stable: sha256(service + "\0" + the masked text that created the cluster)[:16],
kept when drain3 generalises the cluster (`session closed for user cyrus` → `... user <*>`): every member of a
group gives a line the id of its group, the text follows the generalisation. A process remembers the id of
each masked text it has seen, so a redelivered event gets the id it was stored with; a line that fits a
known template exactly (its tokens equal the template's but for wildcards) joins it before drain3's
similarity search can open a new one.

Members share what they mined through log_templates: each seeds its miners with the table's rows — id and
current text — at start and every minute, so a restarted process, or another member, gives a line the id it
already has in the table. The statistics (count, first/last seen, the template's latest text) are written by
streamer.sink in each batch's transaction.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from drain3.drain import Drain, LogCluster

from streamer.db import one
from streamer.errors import one_line

log = logging.getLogger(__name__)

# Bounds the cache of (service, masked text) → template so a stream of unique lines cannot grow memory forever.
_CACHE_LIMIT = 100_000
DEPTH = 5
SIMILARITY = 0.7

_E = r"(?![A-Za-z0-9])"  # a value ends before a letter or digit (and starts after one: _MASK)
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# In order: the first alternative that matches at a position wins. Possessive loops (++, *+): a word that
# is not a host name fails at once instead of backtracking through its letters.
_MASKS = (
    ("<DATE>", _DAY + " " + _MONTH + r" +\d{1,2} \d{1,2}:\d{2}:\d{2}(?: \d{4})?" + _E),
    ("<UUID>", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _E),
    ("<IP>", r"\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?" + _E),
    ("<HOST>", r"(?:[A-Za-z0-9-]++\.)++(?:com|net|org|edu|io|local|[a-z]{2})(?::\d{1,5})?" + _E),
    ("<TIME>", r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?" + _E),
    ("<DUR>", r"\d+(?:\.\d+)? ?(?:ms|sec|secs|seconds|s)" + _E),
    ("<HOST>", r"(?<!\S)[A-Za-z0-9][A-Za-z0-9.-]*+:\d{2,5}(?!\S)"),  # name:port
    # a size with its readable form is one value: "1232 bytes (1.20 KB)"
    ("<SIZE>", r"\d+(?:\.\d+)? ?(?:bytes|[KMGT]i?B)(?: \(\d+(?:\.\d+)? ?[KMGT]i?B\))?" + _E),
    ("<HEX>", r"0[xX][0-9a-fA-F]+" + _E),
    ("<HEX>", r"(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}" + _E),
    ("<NUM>", r"[-+]?\d+(?:\.\d+)?" + _E),
)
# Values start at a word start (one look-behind before trying any), but for a boolean after ':' or '='. A
# value that starts with a letter has a digit, '.', ':' or '-' after its first letters, or is a day's name: a
# plain word (most of a line) fails that one look-ahead instead of every alternative (bench workload: 12.3 ->
# 10.9 µs per event, the same masks).
_MASK = re.compile(
    r"(?<![A-Za-z0-9])(?:(?=[-+0-9])|(?=[A-Za-z]++[0-9.:-])|(?="
    + _DAY
    + " ))(?:"
    + "|".join(f"({pattern})" for _, pattern in _MASKS)
    + r")|(?<=[:=])(true|false)"
    + _E
)
_PLACEHOLDER = ["", *(name for name, _ in _MASKS), "<BOOL>"]  # by group number
# Joins a batch's messages for the one masking pass; no mask matches across it.
_SEP = "\n\x01\n"


def _placeholder(match: re.Match) -> str:
    return _PLACEHOLDER[match.lastindex or 0]


def mask_batch(messages: list[str]) -> list[str]:
    """The masked text of every message: variables as placeholder tokens, case and everything else kept."""
    if not messages:
        return []
    masked = _MASK.sub(_placeholder, _SEP.join(messages)).split(_SEP)
    if len(masked) != len(messages):  # a message held the separator itself: mask one by one
        masked = [_MASK.sub(_placeholder, m) for m in messages]
    return masked


def template_id(service: str, template: str) -> str:
    """Deterministic across processes: the same service and text give the same id everywhere."""
    return hashlib.sha256(f"{service}\0{template}".encode()).hexdigest()[:16]


# A plain word: letters only, perhaps quoted or followed by punctuation ("Paused", "'Active'", "SPP.").
_PLAIN = re.compile(r"""['"(\[]?[A-Za-z]+[.,:;!?'")\]]*$""")


def _capitalised(word: str) -> bool:
    return word.lstrip("'\"([")[:1].isupper()


class _Miner(Drain):
    """drain3's Drain with two changes to what counts as similar: a wildcard matches a placeholder, and a pair
    of different plain words vetoes the match when it is not the only one or either word is capitalised
    (in logs those are states and names of constants; lower-case single words are user names, hosts...)."""

    def __init__(self) -> None:
        super().__init__(depth=DEPTH, sim_th=SIMILARITY, max_children=100)

    @staticmethod
    def has_numbers(s: str) -> bool:
        # placeholders and numbers go down the prefix tree's wildcard branch
        return "<" in s or any(c.isdigit() for c in s)

    def get_seq_distance(self, seq1, seq2, include_params: bool):
        if not seq1:
            return 1.0, 0
        similar = params = plain = 0
        wildcard = self.param_str
        for template_token, token in zip(seq1, seq2):
            if template_token == token:
                similar += 1
            elif template_token == wildcard:
                params += 1
                similar += include_params or "<" in token
            elif _PLAIN.match(template_token) and _PLAIN.match(token):
                plain += 1
                if plain > 1 or _capitalised(template_token) or _capitalised(token):
                    return 0.0, 0
        return similar / len(seq1), params

    def fitting(self, tokens: list[str]) -> LogCluster | None:
        """The cluster whose template the tokens fit exactly (wildcards aside), if any."""
        return self.tree_search(self.root_node, tokens, 1.0, True)

    def add_tokens(self, tokens: list[str]) -> LogCluster:
        """What fitting() then add_log_message() give, in one descent of the prefix tree and one pass over
        its leaf's clusters (a miss is most of the miner's cost): the cluster the tokens fit exactly, else
        the most similar one at or above sim_th (generalised to take them), else a new one."""
        leaf = self._leaf(tokens) if tokens else None
        if leaf is None:  # no such length or prefix yet, or an empty message: drain3's own way
            return self.fitting(tokens) or self.add_log_message(" ".join(tokens))[0]
        n = len(tokens)
        wildcard = self.param_str
        fit, fit_params = None, -1
        best, best_sim, best_params = None, -1.0, -1
        for cluster_id in leaf.cluster_ids:
            cluster = self.id_to_cluster.get(cluster_id)
            if cluster is None:
                continue
            equal = params = placeholders = plain = 0
            for template_token, token in zip(cluster.log_template_tokens, tokens):
                if template_token == token:
                    equal += 1
                elif template_token == wildcard:
                    params += 1
                    placeholders += "<" in token
                elif _PLAIN.match(template_token) and _PLAIN.match(token):
                    plain += 1
                    if plain > 1 or _capitalised(template_token) or _capitalised(token):
                        equal = params = placeholders = -n  # vetoed: similarity 0 (below every cut)
                        break
            if equal + params == n and params > fit_params:
                fit, fit_params = cluster, params
            sim = max((equal + placeholders) / n, 0.0)
            if sim > best_sim or (sim == best_sim and max(params, 0) > best_params):
                best, best_sim, best_params = cluster, sim, max(params, 0)
        if fit is not None:
            return fit
        if best is None or best_sim < self.sim_th:
            self.clusters_counter += 1
            best = LogCluster(tokens, self.clusters_counter)
            self.id_to_cluster[best.cluster_id] = best
            self.add_seq_to_prefix_tree(self.root_node, best)
            return best
        generalised = tuple(self.create_template(tokens, best.log_template_tokens))
        if generalised != best.log_template_tokens:
            best.log_template_tokens = generalised
        best.size += 1
        return best

    def _leaf(self, tokens: list[str]):
        """The prefix tree's leaf for these tokens, as drain3's tree_search finds it, or None."""
        node = self.root_node.key_to_child_node.get(str(len(tokens)))
        depth = 1
        for token in tokens:
            if node is None or depth >= self.max_node_depth or depth == len(tokens):
                break
            children = node.key_to_child_node
            node = children.get(token) or children.get(self.param_str)
            depth += 1
        return node


class TemplateMiners:
    """One miner per service. Only the first occurrence of a masked message is clustered; later ones are a
    dict lookup by (service, masked text)."""

    def __init__(self, refresh_interval: float = 60.0, clock=time.monotonic):
        self._miners: dict[str, _Miner] = {}
        self._ids: dict[tuple[str, int], str] = {}  # (service, drain3's process-local cluster id) -> template id
        self._clusters: dict[str, tuple[str, LogCluster]] = {}  # template id -> (service, its cluster)
        self._cache: dict[tuple[str, str], str] = {}  # (service, masked text) -> template id
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._next_refresh = clock()  # due at once: the first batch loads what the group knows
        self._loaded_up_to: datetime | None = None  # the database's now() at the last refresh
        self._failing = False

    def __len__(self) -> int:
        """Templates known to this process (mined here or learnt from log_templates)."""
        return len(self._clusters)

    def _miner(self, service: str) -> _Miner:
        miner = self._miners.get(service)
        if miner is None:
            miner = self._miners[service] = _Miner()
        return miner

    def _mine(self, service: str, masked: str) -> str:
        miner = self._miner(service)
        tokens = miner.get_content_as_tokens(masked)
        cluster = miner.add_tokens(tokens)
        tid = self._ids.get((service, cluster.cluster_id))
        if tid is None:  # opened by this line: named after it, for good
            tid = self._ids[service, cluster.cluster_id] = template_id(service, " ".join(tokens))
            self._clusters[tid] = (service, cluster)
        return tid

    def template_of(self, service: str | None, message: str) -> tuple[str, str]:
        """(template id, current template text) for one message."""
        return self.assign([service], [message]).of(0)

    def assign(self, services, messages) -> EventTemplates:
        """The template of every message of a batch (services[i] may be None: the empty service)."""
        messages = list(messages)
        cache = self._cache
        pairs = [(service or "", key) for service, key in zip(services, mask_batch(messages))]
        hits = list(map(cache.get, pairs))  # C-level lookups; Python only for the misses
        if None in hits:
            for i, tid in enumerate(hits):
                if tid is None:
                    tid = cache.get(pairs[i])  # mined earlier in this batch
                    if tid is None:
                        if len(cache) >= _CACHE_LIMIT:
                            cache.clear()
                        tid = cache[pairs[i]] = self._mine(*pairs[i])
                    hits[i] = tid
        ids = cast("list[str]", hits)  # every miss was mined above: no None is left
        texts = {}
        for tid in set(ids):
            service, cluster = self._clusters[tid]
            texts[tid] = (service, " ".join(cluster.log_template_tokens))  # as generalised so far
        return EventTemplates(ids, texts)

    def seed(self, tid: str, service: str, template: str) -> bool:
        """Make a template another member (or an earlier run) mined a cluster of this service's miner, with
        its id and current text: a message that fits it, or is similar enough, then gets that id here too.
        False when already known."""
        if tid in self._clusters:
            return False
        service = service or ""
        drain = self._miner(service)
        drain.clusters_counter += 1
        cluster = LogCluster(template.split(), drain.clusters_counter)
        drain.id_to_cluster[cluster.cluster_id] = cluster
        drain.add_seq_to_prefix_tree(drain.root_node, cluster)
        self._ids[service, cluster.cluster_id] = tid
        self._clusters[tid] = (service, cluster)
        return True

    def load(self, conn, since: datetime | None = None) -> int:
        """Seed the miners with the group's templates (first seen since `since`, most counted first); returns
        how many were new here."""
        rows = conn.execute(_LOAD_SQL, (since, since, _LOAD_LIMIT)).fetchall()
        return sum(self.seed(tid, service, template) for tid, service, template in rows)

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
SELECT template_id, service, template FROM log_templates WHERE %s::timestamptz IS NULL OR first_seen >= %s::timestamptz
ORDER BY count DESC LIMIT %s"""
_REFRESH_OVERLAP = timedelta(minutes=2)


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
