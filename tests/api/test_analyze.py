"""parse_items and analyze without a server: the accepted shapes, the limits, and run's decoder and score stage."""

from __future__ import annotations

import orjson
import pytest

from streamer.api.analyze import BadRequest, Limits, analyze, parse_items
from streamer.decode import Decoder
from streamer.ml.scorer import Scorer
from testkit.pipeline import MODELS

LIMITS = Limits(max_events=3, max_event_bytes=100, max_body_bytes=10_000)


def test_each_shape_gives_the_record_values_run_would_read():
    event = {"message": "disk full", "level": "error"}
    assert parse_items(orjson.dumps({"events": ["a line", event]}), "application/json", LIMITS) == [
        (None, b"a line"),
        (None, orjson.dumps(event)),
    ]
    assert parse_items(orjson.dumps([event]), "application/json; charset=utf-8", LIMITS) == [
        (None, orjson.dumps(event))
    ]
    assert parse_items(orjson.dumps(event), "application/vnd.x+json", LIMITS) == [(None, orjson.dumps(event))]
    rows = {"log_data": [{"id": 9, "message": "x"}]}
    assert parse_items(orjson.dumps(rows), "application/json", LIMITS) == [(9, b'{"id":9,"message":"x"}')]
    assert parse_items(b"one\r\n\n  \ntwo", "text/plain", LIMITS) == [(None, b"one\r"), (None, b"two")]


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        (b'["a", "b", "c", "d"]', "application/json", 413),
        (orjson.dumps(["x" * 101]), "application/json", 413),
        (b"[]", "application/json", 400),
        (b"null", "application/json", 400),
        (b'{"log_data": {"id": 1}}', "application/json", 400),
        (b"a", "application/octet-stream", 415),
        (b"a", None, 415),
    ],
)
def test_refusals(body, content_type, status):
    with pytest.raises(BadRequest) as err:
        parse_items(body, content_type, LIMITS)
    assert err.value.status == status


def test_analyze_keeps_posted_order_with_dead_letters_and_multi_record_items_in_place():
    scorer = Scorer.load(MODELS)
    items = [(1, b'{"msg": ""}'), (2, b'[{"message": "a"}, {"message": "b"}]'), (None, b"service started")]
    out = orjson.loads(analyze(items, scorer, Decoder()))
    assert [(r["index"], r["record_index"], r.get("id")) for r in out["results"]] == [
        (0, 0, 1),
        (1, 0, 2),
        (1, 1, 2),
        (2, 0, None),
    ]
    assert out["results"][0]["dead_letter"]["error_class"] == "no_message"
    assert [r["scored"]["message"] for r in out["results"][1:]] == ["a", "b", "service started"]
    assert out["count"] == 4 and out["model_version"] == scorer.model_version
