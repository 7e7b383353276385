"""Templates mined in a real `streamer run` group (real broker, real PostgreSQL): two members, one of them
SIGKILLed mid-stream and restarted, share one log_templates row per template whose count is exactly the
number of stored events of that template (batches redelivered after the kill count nothing twice); every
logs.scored record and ml_predictions row carries its template id, and exactly one event per template is
marked new."""

from __future__ import annotations

import random

import orjson
import pytest

from streamer.templates import TemplateMiners
from testkit.clients import consume_all, produce, query, wait_for
from testkit.pipeline import StreamerProcess, caught_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = {
    "auth": ["user {u} logged in from 10.0.{a}.{b}", "password check failed for user {u} after {a} attempts"],
    "shop": ["GET /api/orders/{u} 200 size {ms}", "payment {u} declined, reason {a}"],
    "": ["disk usage at {a} percent on volume {b}"],  # no service: a service of its own
}


def _events(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        service = rng.choice(sorted(TEXTS))
        text = rng.choice(TEXTS[service]).format(
            u=rng.randrange(10**6), a=rng.randrange(255), b=rng.randrange(255), ms=rng.randrange(5000)
        )
        event = {"message": text, "log": {"level": "INFO"}, "seq": i}
        if service:
            event["service"] = {"name": service}
        out.append(event)
    return out


def test_two_members_a_kill_and_a_restart_share_exact_template_counts(
    kafka_bootstrap, topics, streamer_env, migrated_db_url, tmp_path
):
    events = _events(6000, seed=11)
    expected = TemplateMiners().assign(
        [e.get("service", {}).get("name") for e in events], [e["message"] for e in events]
    )
    expected_templates = set(expected.texts.values())
    assert len(expected_templates) == 5  # every variable part is masked: each text is one template

    procs: list[StreamerProcess] = []

    def start() -> StreamerProcess:
        p = StreamerProcess(
            {**streamer_env, "STREAMER_TEMPLATES": "on"},
            tmp_path / f"member-{len(procs)}.log",
            "--batch-max-events",
            "200",
        )
        procs.append(p)
        p.wait_ready()
        return p

    def stored() -> int:
        return query(migrated_db_url, "SELECT count(*) FROM log_entries")[0][0]

    try:
        member_a, _member_b = start(), start()
        produce(
            kafka_bootstrap, topics.raw, [orjson.dumps(e) for e in events[:3000]], keys=[b"%d" % i for i in range(3000)]
        )
        wait_for(lambda: stored() >= 1000, timeout=60, what="a first part stored")
        member_a.kill()  # its uncommitted batches are redelivered to the other member
        produce(
            kafka_bootstrap,
            topics.raw,
            [orjson.dumps(e) for e in events[3000:]],
            keys=[b"%d" % i for i in range(3000, 6000)],
        )
        start()  # member A again: a fresh process, its miners seeded from log_templates
        wait_for(
            lambda: all(p.alive() for p in procs[1:]) and caught_up(kafka_bootstrap, topics.group, topics.raw, 6),
            timeout=120,
            interval=0.5,
            what="the group to commit the end of every partition",
        )
        restarted = procs[2].output()
        for p in procs[1:]:
            assert p.terminate() == 0, p.output()[-3000:]
    finally:
        for p in procs:
            p.close()

    assert stored() == 6000
    assert "learnt 5 template(s) from log_templates" in restarted  # what the others had mined, at its start
    rows = query(
        migrated_db_url, "SELECT template_id, service, template, count, first_seen <= last_seen FROM log_templates"
    )
    assert {(service, template) for _, service, template, _, _ in rows} == expected_templates
    assert all(ordered for *_, ordered in rows)
    # exact: the count of each template is the number of stored events that carry it, and they add up
    per_template = dict(query(migrated_db_url, "SELECT template_id, count(*) FROM ml_predictions GROUP BY 1"))
    assert {tid: count for tid, _, _, count, _ in rows} == per_template
    assert sum(per_template.values()) == 6000
    assert query(migrated_db_url, "SELECT sum(count) FROM log_template_hours")[0][0] == 6000
    new_rows = query(migrated_db_url, "SELECT template_id, count(*) FROM ml_predictions WHERE template_new GROUP BY 1")
    assert sorted(new_rows) == sorted((tid, 1) for tid in per_template)

    # logs.scored: every record names the template its row names; one marked new is marked so in the row
    by_source = {
        (t, p, o): (tid, new)
        for t, p, o, tid, new in query(
            migrated_db_url,
            "SELECT kafka_topic, kafka_partition, kafka_offset, template_id, template_new FROM ml_predictions",
        )
    }
    scored = [orjson.loads(r.value)["streamer"] for r in consume_all(kafka_bootstrap, topics.scored, timeout=60)]
    assert len(scored) >= 6000
    for s in scored:
        tid, new = by_source[(s["source"]["topic"], s["source"]["partition"], s["source"]["offset"])]
        assert s["template_id"] == tid
        assert not s["template_new"] or new
    assert sum(s["template_new"] for s in scored) >= 1
