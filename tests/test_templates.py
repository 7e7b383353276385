"""streamer.templates: deterministic ids across miners, masked variants share a template, batch counting."""

from datetime import datetime, timezone

from streamer.templates import BatchTemplates, TemplateMiners, template_id


def test_same_template_same_id_in_two_independent_miners():
    lines = ["Connection from 10.0.0.1 closed after 12 ms", "Connection from 10.0.0.7 closed after 900 ms"]
    first, second = TemplateMiners(), TemplateMiners()
    ids_first = [first.template_of("sshd", line)[0] for line in lines]
    ids_second = [second.template_of("sshd", line)[0] for line in reversed(lines)]
    assert len(set(ids_first)) == 1
    assert ids_first[0] == ids_second[0]


def test_template_masks_variables_and_is_per_service():
    miners = TemplateMiners()
    tid, template = miners.template_of("api", "user 42 logged in from 192.168.1.2")
    assert "42" not in template and "192.168.1.2" not in template
    other_tid, _ = miners.template_of("db", "user 42 logged in from 192.168.1.2")
    assert tid != other_tid
    assert tid == template_id("api", template)


def test_different_messages_get_different_templates():
    miners = TemplateMiners()
    a, _ = miners.template_of("api", "disk full on /var")
    b, _ = miners.template_of("api", "worker started successfully now")
    assert a != b


def test_batch_counts_one_entry_per_template_with_time_bounds():
    batch = BatchTemplates()
    early = datetime(2026, 1, 1, tzinfo=timezone.utc)
    late = datetime(2026, 1, 2, tzinfo=timezone.utc)
    batch.add("api", "t1", "x <NUM>", late)
    batch.add("api", "t1", "x <NUM>", early)
    batch.add("api", "t2", "y", early)
    assert batch.counts["t1"].count == 2
    assert batch.counts["t1"].first_seen == early and batch.counts["t1"].last_seen == late
    assert len(batch.counts) == 2
