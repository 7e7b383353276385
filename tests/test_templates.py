"""streamer.templates: masked variants share a template, a cluster keeps its id while drain3 generalises it,
ids are the same in two miners and after a restart seeded from the table's rows, the first occurrence of a
masked message is the only one mined, and an unreachable database only delays the sharing."""

from streamer.templates import TemplateMiners, mask_batch, template_id


def test_masks_keep_one_token_per_value():
    assert mask_batch(
        [
            "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106",
            "proxy.example.com:5070 close, 1232 bytes (1.20 KB) sent, 0 bytes received, lifetime 00:01",
            "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] flags=0x1f at Sat Jun 11 03:28:21 2005",
        ]
    ) == [
        "Receiving block blk_<NUM> src: /<IP>",
        "<HOST> close, <SIZE> sent, <SIZE> received, lifetime <TIME>",
        "[instance: <UUID>] flags=<HEX> at <DATE>",
    ]


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
    assert template == "user <NUM> logged in from <IP>"
    other_tid, _ = miners.template_of("db", "user 42 logged in from 192.168.1.2")
    assert tid != other_tid
    assert tid == template_id("api", template)  # named after the masked text that opened its cluster


def test_different_messages_get_different_templates():
    miners = TemplateMiners()
    a, _ = miners.template_of("api", "disk full on /var")
    b, _ = miners.template_of("api", "worker started successfully now")
    assert a != b


def test_capitalised_words_are_states_not_variables():
    # Loghub OpenStack: "VM Paused" and "VM Resumed" are two events; "for user root" / "for user news" one
    miners = TemplateMiners()
    paused = miners.template_of("nova", "[instance: 1] VM Paused (Lifecycle Event)")[0]
    assert miners.template_of("nova", "[instance: 2] VM Resumed (Lifecycle Event)")[0] != paused
    root = miners.template_of("sshd", "session closed for user root")[0]
    assert miners.template_of("sshd", "session closed for user news") == (root, "session closed for user <*>")


def test_a_cluster_keeps_its_id_when_it_generalises():
    miners = TemplateMiners()
    first_id, first_text = miners.template_of("sshd", "Connection closed by alpha")
    assert first_text == "Connection closed by alpha"
    assert miners.template_of("sshd", "Connection closed by beta") == (first_id, "Connection closed by <*>")
    # the earlier line (a redelivery) keeps its id and now reads the generalised text
    assert miners.template_of("sshd", "Connection closed by alpha") == (first_id, "Connection closed by <*>")
    assert len(miners) == 1


def test_a_restarted_miner_seeded_from_the_table_gives_every_line_its_stored_id():
    lines = [
        "Connection closed by alpha",
        "Connection closed by beta",
        "session opened for user root by (uid=0)",
        "session opened for user cyrus by (uid=6)",
        "Failed password for root from 10.0.0.1 port 22 ssh2",
        "Received disconnect from 10.0.0.2: 11: Bye Bye [preauth]",
    ]
    before = TemplateMiners()
    stored = before.assign(["sshd"] * len(lines), lines)
    table = [(tid, service, text) for tid, (service, text) in stored.texts.items()]  # log_templates' rows

    restarted = TemplateMiners()
    assert sum(restarted.seed(*row) for row in table) == len(table)
    assert not restarted.seed(*table[0])  # already known: not a second cluster
    again = restarted.assign(["sshd"] * len(lines), lines)  # the same events, redelivered
    assert again.ids == stored.ids
    # a new member of a stored group joins it: its id, not one of its own
    assert restarted.template_of("sshd", "Connection closed by gamma")[0] == stored.ids[0]
    assert restarted.template_of("sshd", "session opened for user news by (uid=9)")[0] == stored.ids[2]
    assert TemplateMiners().template_of("sshd", "Connection closed by gamma")[0] != stored.ids[0]  # unseeded


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
    assert miners.template_of("api", "disk full on /var")[1] == "disk full on /var"  # mining goes on


def test_one_pass_mining_gives_what_fitting_then_drain3s_add_log_message_give():
    from streamer.templates import _Miner

    lines = [
        "session opened for user root",
        "session opened for user news",  # generalises: one lower-case word differs
        "session opened for user <NUM>",  # fits the generalised template exactly
        "VM Paused",
        "VM Resumed",  # capitalised: vetoed, a cluster of its own
        "disk <NUM> full on <HOST>",
        "disk <NUM> full on node",
        "",
        "one two three four five six seven",
        "one two three four five six eight",
    ] * 2
    one_pass, two_steps = _Miner(), _Miner()
    for line in mask_batch(lines):
        tokens = one_pass.get_content_as_tokens(line)
        got = one_pass.add_tokens(tokens)
        want = two_steps.fitting(tokens) or two_steps.add_log_message(line)[0]
        assert (got.cluster_id, got.log_template_tokens) == (want.cluster_id, want.log_template_tokens)
