"""Template statistics written by PostgresSink in each batch's transaction, against the real PostgreSQL: two
members' batches add up in one row per template, a redelivered batch and a row the database refuses count
nothing, a template is new (one event marked) only to the first member that stores it, the counts survive a
restart, and `streamer templates` lists the new and the surging ones."""

import pytest

from streamer.cli import main
from streamer.db import connect
from streamer.enrich import database_rows
from streamer.sink import PostgresSink
from streamer.templates import TemplateMiners
from testkit.clients import query
from tests.test_sink import Columns, event

pytestmark = pytest.mark.integration

LOGIN = "user {i} logged in from 10.0.0.{j}"
DISK = "disk full on /var"
DISK_T = "disk full on /var"  # paths are kept: which disk is full is the message
CACHE_T = "cache warmed in <DUR>"


def _write(sink, miners, events):
    templates = miners.assign([e.service for e in events], [e.message for e in events])
    rejected = sink.write(database_rows(events, Columns(len(events)), templates), templates)
    return templates, rejected


def _stats(url):
    return {template: count for template, count in query(url, "SELECT template, count FROM log_templates")}


def test_two_members_a_redelivery_and_a_restart_keep_exact_counts(migrated_db_url, capsys):
    member_a, member_b = TemplateMiners(), TemplateMiners()  # two processes: separate drain3 state
    sink_a, sink_b = PostgresSink(migrated_db_url), PostgresSink(migrated_db_url)
    first = [event(i, LOGIN.format(i=i, j=i % 9) if i % 5 else DISK) for i in range(100)]  # 80 logins, 20 disk
    first[7] = event(7, "NUL \x00 byte")  # refused by the database: isolated, and counted nowhere
    templates, rejected = _write(sink_a, member_a, first)
    assert [i for i, _, _ in rejected] == [7]
    # The first stored event of each template is the one marked new.
    assert templates.new_keys == {("logs.raw", 0, 0, 0), ("logs.raw", 0, 1, 0)}
    assert _stats(migrated_db_url) == {"user <NUM> logged in from <IP>": 79, DISK_T: 20}

    redelivered, _ = _write(sink_a, member_a, first[50:])  # crash after the commit, before the offsets
    assert redelivered.new_keys == set()
    assert _stats(migrated_db_url) == {"user <NUM> logged in from <IP>": 79, DISK_T: 20}

    second = [event(100 + i, LOGIN.format(i=i, j=3) if i % 2 else "cache warmed in 5 ms") for i in range(30)]
    from_b, _ = _write(sink_b, member_b, second)
    assert from_b.new_keys == {("logs.raw", 0, 100, 0)}  # B's login lines are A's template: not new
    assert _stats(migrated_db_url) == {"user <NUM> logged in from <IP>": 94, DISK_T: 20, CACHE_T: 15}

    sink_a.close()
    restarted = TemplateMiners()  # a fresh process: learns the group's templates, counts go on
    with connect(migrated_db_url) as conn:
        assert restarted.load(conn) == 3
    sink = PostgresSink(migrated_db_url)
    again, _ = _write(sink, restarted, [event(200, DISK), event(201, LOGIN.format(i=1, j=2))])
    assert again.new_keys == set()
    assert _stats(migrated_db_url)[DISK_T] == 21
    sink.close()
    sink_b.close()

    # ml_predictions carries every event's template; exactly one event per template is marked new.
    rows = query(
        migrated_db_url,
        """SELECT t.template, count(*), count(*) FILTER (WHERE p.template_new)
                                     FROM ml_predictions p JOIN log_templates t USING (template_id)
                                     GROUP BY t.template""",
    )
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        "user <NUM> logged in from <IP>": (95, 1),
        DISK_T: (21, 1),
        CACHE_T: (15, 1),
    }

    hourly = query(
        migrated_db_url,
        "SELECT sum(h.count) FROM log_template_hours h JOIN log_templates t USING (template_id) GROUP BY t.template",
    )
    assert sorted(n for (n,) in hourly) == [15, 21, 95]  # the same exact counts, by the hour

    assert main(["templates", "--new", "--since", "1h", "--database-url", migrated_db_url]) == 0
    out = capsys.readouterr().out
    assert "count=21" in out and CACHE_T in out and len(out.splitlines()) == 3
    assert main(["templates", "--surging", "--since", "1h", "--database-url", migrated_db_url]) == 0
    surging = capsys.readouterr().out.splitlines()
    assert "user <NUM> logged in from <IP>" in surging[0] and "before=0.0/h" in surging[0]  # busiest, all new
    # History (as ten days of stream would leave it): the logins were steady at 100/h, the cache line quiet.
    # Now the cache line surges against its own past and the logins do not; a lifetime rate ranks them the
    # other way round (24,095 vs 25 events in ten days).
    for template, before in (("user <NUM> logged in from <IP>", 24_000), (CACHE_T, 10)):
        query(
            migrated_db_url,
            "UPDATE log_templates SET first_seen = now() - interval '10 days', count = count + %s WHERE template = %s",
            (before, template),
        )
    assert main(["templates", "--surging", "--since", "1h", "--database-url", migrated_db_url]) == 0
    ranked = [next(t for t in _stats(migrated_db_url) if t in line) for line in capsys.readouterr().out.splitlines()]
    assert ranked == [DISK_T, CACHE_T, "user <NUM> logged in from <IP>"]
