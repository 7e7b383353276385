"""streamer templates + streamer.templates.upsert against the real PostgreSQL: two members' batches add up in
one row per template, a template is new only to the first member that upserts it, and the counts survive a
new connection (a restart)."""

from datetime import datetime, timedelta, timezone

from streamer.cli import main
from streamer.db import connect
from streamer.templates import BatchTemplates, TemplateMiners, upsert


def _batch(miners, lines, at):
    batch = BatchTemplates()
    for line in lines:
        tid, template = miners.template_of("sshd", line)
        batch.add("sshd", tid, template, at)
    return batch


def test_two_members_share_counts_and_survive_restart(migrated_db_url, capsys):
    now = datetime.now(timezone.utc)
    lines = ["Accepted password for root from 10.0.0.1 port 22", "Accepted password for root from 10.0.0.9 port 2"]
    member_a, member_b = TemplateMiners(), TemplateMiners()  # two processes: separate drain3 state
    with connect(migrated_db_url) as conn_a, connect(migrated_db_url) as conn_b:
        with conn_a.transaction(), conn_a.cursor() as cur:
            new_a = upsert(cur, _batch(member_a, lines, now - timedelta(minutes=5)))
        with conn_b.transaction(), conn_b.cursor() as cur:
            new_b = upsert(cur, _batch(member_b, lines[:1], now))
    assert len(new_a) == 1 and new_b == set()
    with connect(migrated_db_url) as restarted:  # a fresh process sees what both wrote
        rows = restarted.execute("SELECT template_id, count, first_seen, last_seen FROM log_templates").fetchall()
    assert len(rows) == 1
    tid, count, first_seen, last_seen = rows[0]
    assert tid in new_a and count == 3
    assert last_seen - first_seen == timedelta(minutes=5)

    assert main(["templates", "--new", "--since", "1h", "--database-url", migrated_db_url]) == 0
    out = capsys.readouterr().out
    assert tid in out and "count=3" in out
    assert main(["templates", "--surging", "--since", "1h", "--database-url", migrated_db_url]) == 0
    assert tid in capsys.readouterr().out
