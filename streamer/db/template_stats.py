"""log_templates and log_template_hours (migrations 4 and 6): what the group knows of each mined template.

The sink adds the counts of the rows each batch inserted, in the batch's transaction (add()), so a redelivered
event, which inserts nothing, is counted once and never makes its template new. The counts are summed in
Python and sent as one row per template: one upsert per distinct template per batch (and per hour), not a
staging table and a join. The first inserted event of each template the upsert created is marked
template_new in ml_predictions; on the usual batch that is a handful of rows, so an UPDATE after the COPY
costs less than deciding before it, which would hold the template rows' locks through the whole COPY.
"""

from __future__ import annotations

from collections import Counter

import orjson

# Row layout: streamer.sink.STAGE_COLUMNS (key 0-3, event time 4, model version 10, template id 16).
_TEMPLATE_ID = 16

# In id order, so concurrent batches lock the rows of the same templates in one order and cannot deadlock.
# The text is the miner's latest: drain3 generalises a cluster (`... user <*>`) and its id stays.
_UPSERT = """
WITH batch AS (SELECT * FROM json_to_recordset(%s::json) AS t (template_id text, service text, template text, n bigint)),
upserted AS (
    INSERT INTO log_templates AS l (template_id, service, template, first_seen, last_seen, count)
    SELECT template_id, service, template, now(), now(), n FROM batch ORDER BY template_id
    ON CONFLICT (template_id) DO UPDATE SET count = l.count + excluded.count,
        last_seen = greatest(l.last_seen, excluded.last_seen), template = excluded.template
    RETURNING template_id, xmax = 0 AS created),
hours AS (
    INSERT INTO log_template_hours AS h (template_id, hour, count)
    SELECT template_id, date_trunc('hour', now()), n FROM batch ORDER BY template_id
    ON CONFLICT (template_id, hour) DO UPDATE SET count = h.count + excluded.count)
SELECT template_id FROM upserted WHERE created
"""
_MARK_NEW = """
UPDATE ml_predictions p SET template_new = true
FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::int[], %s::text[], %s::timestamptz[])
    AS f (kafka_topic, kafka_partition, kafka_offset, record_index, model_version, event_time)
WHERE (p.event_time, p.kafka_topic, p.kafka_partition, p.kafka_offset, p.record_index, p.model_version)
    = (f.event_time, f.kafka_topic, f.kafka_partition, f.kafka_offset, f.record_index, f.model_version)
"""


def add(cur, rows: list[tuple], texts: dict[str, tuple[str, str]]) -> list[tuple]:
    """Count `rows` (rows the caller's transaction inserted into log_entries) into both tables; returns the
    (topic, partition, offset, record_index) of the rows marked template_new: the first row, in key order, of
    each template this upsert created. texts: template id -> (service, template text)."""
    counts = Counter(row[_TEMPLATE_ID] for row in rows)
    counts.pop(None, None)  # an event without a message has no template
    if not counts:
        return []
    # One JSON document, not four arrays: orjson writes it in C, psycopg's array dumper is Python per element.
    batch = [
        {"template_id": tid, "service": texts[tid][0], "template": texts[tid][1], "n": n} for tid, n in counts.items()
    ]
    cur.execute(_UPSERT, (orjson.dumps(batch).decode(),))
    created = {tid for (tid,) in cur.fetchall()}
    if not created:
        return []
    first: dict[str, tuple] = {}
    for row in rows:
        tid = row[_TEMPLATE_ID]
        if tid in created and (tid not in first or row[:4] < first[tid][:4]):
            first[tid] = row
    marked = list(first.values())
    cur.execute(_MARK_NEW, tuple([row[c] for row in marked] for c in (0, 1, 2, 3, 10, 4)))
    return [row[:4] for row in marked]
