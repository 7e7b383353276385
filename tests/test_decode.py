"""Decoder: every input is an Event or a DeadLetter with its bytes intact; it never raises."""

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.decode import DeadLetter, Decoder, Event
from streamer.levels import LEVELS

KAFKA_TS = 1_700_000_000_000
decoder = Decoder(max_message_bytes=1000)


def decode_all(value: bytes | None) -> list:
    return decoder.decode(value, topic="logs.raw", partition=3, offset=42, timestamp_ms=KAFKA_TS, key=b"k")


def decode(value: bytes | None):
    """The one item of a single-record message."""
    (item,) = decode_all(value)
    return item


def test_ecs_event_nested_and_dotted_fields():
    nested = decode(
        orjson.dumps(
            {
                "@timestamp": "2024-03-01T10:00:00.5Z",
                "message": "disk full",
                "log": {"level": "warning"},
                "host": {"name": "db-1"},
                "service": {"name": "postgres"},
            }
        )
    )
    dotted = decode(
        orjson.dumps(
            {
                "@timestamp": "2024-03-01T10:00:00.5Z",
                "message": "disk full",
                "log.level": "warning",
                "host.name": "db-1",
                "service.name": "postgres",
            }
        )
    )
    for event in (nested, dotted):
        assert isinstance(event, Event)
        assert (event.message, event.level, event.host, event.service) == ("disk full", "WARN", "db-1", "postgres")
        assert event.event_time == datetime(2024, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)
        assert (event.topic, event.partition, event.offset, event.key) == ("logs.raw", 3, 42, b"k")
        assert orjson.loads(event.raw_json) == event.raw


@pytest.mark.parametrize(
    "obj, message, level",
    [
        ({"msg": "a", "level": "E"}, "a", "ERROR"),
        ({"log": "fluent-bit line", "severity": "notice"}, "fluent-bit line", "INFO"),
        ({"MESSAGE": "journald", "level": 3}, "journald", "ERROR"),
        ({"message": "m", "level": "no-such-level"}, "m", None),
        ({"message": "", "msg": "fallback"}, "fallback", None),
    ],
)
def test_alternative_field_names(obj, message, level):
    event = decode(orjson.dumps(obj))
    assert isinstance(event, Event)
    assert (event.message, event.level) == (message, level)


@pytest.mark.parametrize(
    "when, expected",
    [
        ({"timestamp": 1_709_287_200}, datetime(2024, 3, 1, 10, 0, tzinfo=UTC)),
        ({"time": 1_709_287_200_000}, datetime(2024, 3, 1, 10, 0, tzinfo=UTC)),
        ({"@timestamp": "2024-03-01 10:00:00"}, datetime(2024, 3, 1, 10, 0, tzinfo=UTC)),
        ({"@timestamp": "not a time"}, datetime.fromtimestamp(KAFKA_TS / 1000, tz=UTC)),
        ({}, datetime.fromtimestamp(KAFKA_TS / 1000, tz=UTC)),
    ],
)
def test_event_time_falls_back_to_kafka_timestamp(when, expected):
    event = decode(orjson.dumps({"message": "x", **when}))
    assert event.event_time == expected


def test_plain_text_line_with_timestamp_and_level():
    event = decode(b"2024-05-01 10:00:00,123 ERROR [main] connection refused\n")
    assert isinstance(event, Event)
    assert event.level == "ERROR"
    assert event.event_time == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert event.message == "[main] connection refused"  # the content without its header is what is scored
    assert event.raw["raw"] == "2024-05-01 10:00:00,123 ERROR [main] connection refused"
    assert event.level_source == "line"


def test_bracketed_text_is_not_malformed_json():
    event = decode(b"[WARN] cache is cold")
    assert isinstance(event, Event) and event.level == "WARN"


@pytest.mark.parametrize(
    "value, error_class",
    [
        (None, "empty"),
        (b"", "empty"),
        (b" \n\t", "empty"),
        (b"x" * 1001, "too_large"),
        (b"\xff\xfe\xfd", "invalid_utf8"),
        (b'{"message": "truncated', "malformed_json"),
        (b"[1]", "not_an_object"),  # an array of one record that is not an object
        (b'"just a string"', "not_an_object"),
        (b"12.5", "not_an_object"),
        (b"null", "not_an_object"),
        (b'{"level": "ERROR"}', "no_message"),
        (b'{"message": 42}', "no_message"),
        (b'{"message": {"text": "nested"}}', "no_message"),
        (b'{"message": "   "}', "no_message"),
    ],
)
def test_dead_letters_keep_original_bytes(value, error_class):
    dead = decode(value)
    assert isinstance(dead, DeadLetter)
    assert dead.error_class == error_class
    assert dead.value == value
    assert dead.stage == "decode" and dead.reason
    assert (dead.topic, dead.partition, dead.offset, dead.key) == ("logs.raw", 3, 42, b"k")


def test_nesting_deeper_than_the_parser_allows_is_malformed():
    value = b'{"a":' * 1100 + b"1" + b"}" * 1100
    (dead,) = Decoder().decode(value, topic="t", partition=0, offset=0)
    assert isinstance(dead, DeadLetter) and dead.error_class == "malformed_json" and dead.value == value


DEAD_LETTER_CLASSES = {
    "empty",
    "too_large",
    "invalid_utf8",
    "malformed_json",
    "not_an_object",
    "no_message",
    "malformed_otlp",
}


def _check_total(result, value):
    if isinstance(result, list):  # every record of a message
        assert result
        for item in result:
            _check_total(item, value)
        return
    assert isinstance(result, (Event, DeadLetter))
    if isinstance(result, DeadLetter):
        assert result.value == value
        assert result.error_class in DEAD_LETTER_CLASSES and result.reason
    else:
        assert result.message.strip()
        assert isinstance(orjson.loads(result.raw_json), dict)
        assert result.event_time.tzinfo is not None
        # What the database columns accept (the level CHECK constraint, text host/service).
        assert result.level is None or result.level in LEVELS
        assert all(v is None or isinstance(v, str) for v in (result.host, result.service))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=1200))
def test_fuzz_arbitrary_bytes(value):
    _check_total(decode_all(value), value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "message",
        "msg",
        "log",
        "MESSAGE",
        "@timestamp",
        "timestamp",
        "time",
        "log.level",
        "level",
        "severity",
        "host",
        "host.name",
        "service",
        "log",
    ]
)


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=8))
def test_fuzz_arbitrary_json_objects(obj):
    value = orjson.dumps(obj)
    result = decode(value)
    _check_total(result, value)
    if isinstance(result, Event):
        assert result.raw == obj


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_arbitrary_json_values(obj):
    value = orjson.dumps(obj)
    _check_total(decode_all(value), value)


def test_message_fields_are_configurable():
    custom = Decoder(message_fields=("event.original", "text"))
    (event,) = custom.decode(
        b'{"event": {"original": "nested one"}, "message": "ignored"}', topic="t", partition=0, offset=0
    )
    assert isinstance(event, Event) and event.message == "nested one"
    (dead,) = custom.decode(b'{"message": "not a configured field"}', topic="t", partition=0, offset=1)
    assert isinstance(dead, DeadLetter) and "event.original, text" in dead.reason


# Valid UTF-8 text, which random bytes rarely are: plain lines, and lines that start like a timestamp and a level
# (impossible dates, odd zones, unknown levels included) to drive the text-head parser.
_timestamps = st.from_regex(r"\A\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}([.,]\d{1,9})?(Z|[+-]\d{2}:?\d{2})?\Z")
_text_lines = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda ts, sep, level, msg: f"{ts}{sep}{level}{msg}",
        _timestamps,
        st.sampled_from(["", " ", "  ", "\t", " ["]),
        st.sampled_from(["INFO", "warn", "ERROR]", "<crit>", "SEVERE:", "NOTICE", "bogus", ""]),
        st.text(max_size=80),
    ),
)


@settings(max_examples=500, deadline=None)
@given(_text_lines)
def test_fuzz_text_lines(line):
    value = line.encode()
    _check_total(decode_all(value), value)


def test_json_array_gives_one_record_each_and_a_bad_one_alone():
    value = b'[{"message": "a", "level": "error"}, 7, {"message": "c"}]'
    items = decode_all(value)
    assert [type(i) for i in items] == [Event, DeadLetter, Event]
    assert [i.record_index for i in items] == [0, 1, 2]
    assert items[0].message == "a" and items[0].level == "ERROR" and items[2].message == "c"
    assert items[1].error_class == "not_an_object" and items[1].value == value
    assert orjson.loads(items[2].raw_json) == {"message": "c"}


def test_ndjson_gives_one_record_per_line_and_a_bad_line_alone():
    value = b'{"message": "first"}\r\n{"message": broken\n\n{"msg": "third"}\n'
    items = decode_all(value)
    assert [type(i) for i in items] == [Event, DeadLetter, Event]
    assert [i.record_index for i in items] == [0, 1, 2]
    assert items[0].message == "first" and items[2].message == "third"
    assert items[1].error_class == "malformed_json"


def test_only_line_terminators_are_stripped_on_every_path():
    text = decode(b"  indented line\t\r\n")
    assert text.message == "  indented line\t"
    obj = decode(b'{"message": "  kept spaces \\r\\n"}\n')
    assert obj.message == "  kept spaces "


def test_single_record_message_has_record_index_zero():
    (item,) = decode_all(b'{"message": "one"}')
    assert item.record_index == 0


def test_user_line_format_fills_time_level_service_and_message():
    custom = Decoder(line_format="<Date> <Time> <Pid> <Level> <Component>: <Content>")
    (event,) = custom.decode(b"2024-01-01 10:00:00 148 WARN db.pool: slow query\n", topic="t", partition=0, offset=0)
    assert (event.level, event.service, event.message) == ("WARN", "db.pool", "slow query")
    assert event.event_time == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        Decoder(line_format="<Date> <Level>")


def test_journald_fields():
    event = decode(
        orjson.dumps(
            {
                "MESSAGE": "Started nginx",
                "PRIORITY": "3",
                "_HOSTNAME": "web-1",
                "SYSLOG_IDENTIFIER": "systemd",
                "__REALTIME_TIMESTAMP": "1700000000000000",
            }
        )
    )
    assert (event.message, event.level, event.host, event.service) == ("Started nginx", "ERROR", "web-1", "systemd")
    assert event.event_time == datetime.fromtimestamp(1_700_000_000, tz=UTC)


def test_syslog_ng_and_kubernetes_fields_and_epoch_ns():
    ng = decode(b'{"MESSAGE": "x", "HOST": "h", "PROGRAM": "cron", "ISODATE": "2024-01-01T00:00:00+00:00"}')
    assert (ng.host, ng.service, ng.event_time.year) == ("h", "cron", 2024)
    k8s = decode(
        orjson.dumps(
            {"log": "hi", "time": 1_700_000_000_000_000_000, "kubernetes": {"host": "node-1", "container_name": "api"}}
        )
    )
    assert (k8s.host, k8s.service) == ("node-1", "api")
    assert k8s.event_time == datetime.fromtimestamp(1_700_000_000, tz=UTC)


def test_gelf_short_message_and_syslog_number_level():
    event = decode(
        b'{"version": "1.1", "host": "app-1", "short_message": "oom", "level": 3, "timestamp": 1700000000.5}'
    )
    assert (event.message, event.level, event.host) == ("oom", "ERROR", "app-1")


def test_line_level_outranks_the_envelope_severity():
    event = decode(b'{"message": "2024-05-01 10:00:00,123 ERROR [main] db down", "severity": "notice"}')
    assert event.level == "ERROR" and event.message == "[main] db down" and event.level_source == "line"
    plain = decode(b'{"message": "db down", "severity": "notice"}')
    assert plain.level == "INFO" and plain.message == "db down" and plain.level_source == "envelope"


@pytest.mark.parametrize(
    "value, level, source",
    [
        (b"<11>Oct 11 22:14:15 web-1 app[10]: disk full", "ERROR", "pri"),
        (b"Oct 11 22:14:15 web-1 app[10]: disk full", None, "none"),
        (b"WARN: disk almost full", "WARN", "line"),
        (b"plain words", None, "none"),
        (b'{"message": "<11>Oct 11 22:14:15 web-1 app[10]: disk full", "severity": "notice"}', "ERROR", "pri"),
        (b'{"message": "disk full"}', None, "none"),
    ],
)
def test_level_source_says_where_the_level_came_from(value, level, source):
    event = decode(value)
    assert (event.level, event.level_source) == (level, source)


def test_header_in_a_json_message_fills_host_and_service_the_envelope_lacks():
    event = decode(b'{"message": "Oct 11 22:14:15 web-1 sshd[10]: Accepted key", "host": "shipper-1"}')
    assert (event.host, event.service, event.message) == ("shipper-1", "sshd", "Accepted key")


def test_journald_byte_array_message_is_text_not_a_dead_letter():
    latin1 = decode(orjson.dumps({"MESSAGE": list(b"caf\xe9 ok"), "PRIORITY": "4", "_HOSTNAME": "h"}))
    assert isinstance(latin1, Event)
    assert (latin1.message, latin1.level, latin1.host) == ("caf\ufffd ok", "WARN", "h")
    assert decode(orjson.dumps({"MESSAGE": list("café\n".encode())})).message == "café"
    not_bytes = decode(orjson.dumps({"MESSAGE": [300, -1]}))
    assert isinstance(not_bytes, DeadLetter) and not_bytes.error_class == "no_message"


def test_docker_json_file_and_fluentd_driver_fields():
    json_file = decode(
        b'{"log": "2024-05-01 10:00:00,123 WARN pool low\\n", "stream": "stderr", '
        b'"time": "2024-05-01T10:00:00.123456789Z"}'
    )
    assert (json_file.message, json_file.level) == ("pool low", "WARN")
    assert json_file.raw["stream"] == "stderr"  # kept with the stored event, not turned into a level
    fluentd = decode(b'{"log": "started", "container_name": "/web", "source": "stdout"}')
    assert fluentd.service == "web"


def test_kubernetes_namespace_names_the_container_service():
    event = decode(
        orjson.dumps(
            {
                "log": "hi",
                "kubernetes": {
                    "host": "node-1",
                    "namespace_name": "payments",
                    "container_name": "api",
                    "pod_name": "api-7d9",
                },
            }
        )
    )
    assert (event.host, event.service) == ("node-1", "payments/api")
    dotted = decode(
        orjson.dumps({"log": "hi", "kubernetes.namespace_name": "shop", "kubernetes.container_name": "cart"})
    )
    assert dotted.service == "shop/cart"


def test_rsyslog_jsonmesg_and_log4j2_json_layout_fields():
    rs = decode(
        orjson.dumps(
            {
                "msg": "x",
                "timereported": "2024-01-01T10:00:00.5+01:00",
                "syslogseverity": "3",
                "hostname": "h",
                "programname": "cron",
            }
        )
    )
    assert (rs.level, rs.host, rs.service, rs.level_source) == ("ERROR", "h", "cron", "envelope")
    assert rs.event_time == datetime(2024, 1, 1, 9, 0, 0, 500000, tzinfo=UTC)
    l4j = decode(
        orjson.dumps(
            {
                "message": "x",
                "level": "WARN",
                "loggerName": "a.B",
                "instant": {"epochSecond": 1_700_000_000, "nanoOfSecond": 123_456_789},
            }
        )
    )
    assert l4j.event_time == datetime.fromtimestamp(1_700_000_000, tz=UTC).replace(microsecond=123456)
    gelf = decode(b'{"short_message": "x", "host": "h", "_container_name": "web", "level": 6}')
    assert (gelf.service, gelf.level) == ("web", "INFO")


def test_user_format_names_the_host_of_logstash_plain_codec_lines():
    custom = Decoder(line_format="<Timestamp> <Host> <Content>")
    (event,) = custom.decode(b"2024-12-02T13:15:55.123Z web-1 cache warmed", topic="t", partition=0, offset=0)
    assert (event.host, event.message) == ("web-1", "cache warmed")
    assert event.event_time == datetime(2024, 12, 2, 13, 15, 55, 123000, tzinfo=UTC)
    (builtin,) = decoder.decode(b"2024-12-02T13:15:55.123Z web-1 cache warmed", topic="t", partition=0, offset=0)
    assert (builtin.host, builtin.message) == (None, "web-1 cache warmed")  # without it, the host is not guessed
    # the content is the shipped line, which may have a header of its own
    (inner,) = custom.decode(
        b"2024-12-02T13:15:55.123Z web-1 2024-06-01 12:00:00,123 ERROR a.B - card expired",
        topic="t",
        partition=0,
        offset=0,
    )
    assert (inner.host, inner.service, inner.level, inner.message) == ("web-1", "a.B", "ERROR", "card expired")
    assert inner.event_time == datetime(2024, 6, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert inner.level_source == "line"


def test_otlp_filelog_body_header_is_parsed():
    """The OTel Collector's filelog receiver without operators: the file's line is the body, no severity."""
    lines = ["2024-06-01 12:00:00,123 ERROR com.example.Payment - card expired", "GET /api/orders/42 200 12ms"]
    export = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": "web-1"}}]},
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"observedTimeUnixNano": "1717243210123000000", "body": {"stringValue": line}}
                            for line in lines
                        ]
                    }
                ],
            }
        ]
    }
    first, second = decode_all(orjson.dumps(export))
    assert (first.host, first.service, first.level, first.message) == (
        "web-1",
        "com.example.Payment",
        "ERROR",
        "card expired",
    )
    assert first.event_time == datetime(2024, 6, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert (second.level, second.level_source, second.message) == (None, "none", "GET /api/orders/42 200 12ms")
