"""streamer.templates: deterministic ids across miners, masked variants share a template, the first
occurrence of a masked message is the only one mined, and seeding makes a member adopt another's template."""

from streamer.templates import TemplateMiners, template_id


def test_same_template_same_id_in_two_independent_miners():
    lines = ["Connection from 10.0.0.1 closed after 12 requests", "Connection from 10.0.0.7 closed after 900 requests"]
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


def test_assign_mines_only_the_first_occurrence_of_a_masked_message():
    miners = TemplateMiners()
    mined = []
    real_mine = miners._mine
    miners._mine = lambda service, masked: mined.append(masked) or real_mine(service, masked)
    messages = [f"user {i} logged in from 10.0.0.{i % 250}" for i in range(200)] + ["disk full on /var"] * 50
    got = miners.assign(["api"] * len(messages), messages)
    assert len(mined) == 2  # one per masked text
    assert len(got.ids) == 250 and len(set(got.ids)) == 2
    assert got.texts[got.ids[0]] == ("api", "user <NUM> logged in from <IP>")
    assert miners.assign([None], ["disk full on /var"]).ids[0] != got.ids[-1]  # no service is a service of its own


def test_a_seeded_template_is_adopted_instead_of_mining_a_new_one():
    # member A generalised "Connection closed by <*>" from two lines; a fresh member B, seeded from the
    # table, gives a third line A's template. Unseeded, B would call it a template of its own.
    member_a = TemplateMiners()
    member_a.template_of("sshd", "Connection closed by alpha")
    shared_id, shared = member_a.template_of("sshd", "Connection closed by beta")
    assert shared == "connection closed by <*>"  # the masked text is lower-cased

    unseeded = TemplateMiners()
    assert unseeded.template_of("sshd", "Connection closed by gamma")[0] != shared_id

    member_b = TemplateMiners()
    assert member_b.seed("sshd", "connection closed by alpha")
    assert member_b.seed("sshd", shared)
    assert not member_b.seed("sshd", shared)  # already known: not a second cluster
    assert member_b.template_of("sshd", "Connection closed by gamma") == (shared_id, shared)
    assert member_b.template_of("sshd", "Connection closed by alpha")[1] == "connection closed by alpha"


def test_refresh_is_rate_limited_and_an_unreachable_database_is_logged_once(caplog, monkeypatch):
    import psycopg

    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

    clock = Clock()
    attempts = []

    def refused(*_args, **_kwargs):
        attempts.append(clock.now)
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(psycopg, "connect", refused)
    miners = TemplateMiners(refresh_interval=60, clock=clock)
    for clock.now in (0, 10, 61, 100, 130):
        miners.refresh("postgresql://streamer@127.0.0.1/streamer")
    assert attempts == [0, 61, 130]
    warnings = [r for r in caplog.records if "could not load the group's templates" in r.getMessage()]
    assert len(warnings) == 1
    assert miners.template_of("api", "disk full on /var")[1] == "disk full on <PATH>"  # mining goes on
