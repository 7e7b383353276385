"""The HTTP API against the real PostgreSQL (and broker, for status): status figures, analyze as `run` scores,
events with filters and cursor pages equal to SQL, templates, bad requests, the token, /metrics, read-only."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from streamer.commands.serve import build
from streamer.config import settings_from_args
from testkit.clients import query
from testkit.pipeline import MODELS, ROOT

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SERVICES = ("shop", "api", "db")
SEVERITY = ("low", "medium", "high", "critical")


def settings_for(db_url: str, bootstrap: str = "127.0.0.1:1", **extra):
    env = {
        "STREAMER_DATABASE_URL": db_url,
        "STREAMER_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMER_MODELS_DIR": str(MODELS),
        **extra,
    }
    return settings_from_args(None, env=env)


@pytest.fixture
def client(migrated_db_url, kafka_bootstrap):
    app, pool = build(settings_for(migrated_db_url, kafka_bootstrap), max_events=50)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    pool.close()


def fill(url: str, n: int = 40) -> None:
    """n events; every third also scored by a second model version (a replay); varied service/host/severity."""
    for i in range(n):
        query(
            url,
            "INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, record_index, event_time, "
            "level, message, host, service, raw) VALUES ('logs.raw', %s, %s, 0, %s, 'INFO', %s, %s, %s, '{}')",
            (i % 3, i, T0 + timedelta(seconds=i // 2), f"message {i}", f"h{i % 4}", SERVICES[i % 3]),
        )
        versions = ["m-old", "m-new"] if i % 3 == 0 else ["m-old"]
        for v in versions:
            query(
                url,
                "INSERT INTO ml_predictions (kafka_topic, kafka_partition, kafka_offset, record_index, "
                "model_version, predicted_level, level_confidence, is_anomaly, anomaly_score, severity) "
                "VALUES ('logs.raw', %s, %s, 0, %s, 'INFO', 0.9, %s, %s, %s)",
                (i % 3, i, v, i % 5 == 0, (i % 10) / 10, SEVERITY[(i + len(v)) % 4]),
            )


def test_status_has_the_models_real_metrics_and_rows_per_version_and_is_stable(client, migrated_db_url):
    fill(migrated_db_url)
    first, second = client.get("/api/status"), client.get("/api/status")
    assert first.status_code == 200
    body = first.json()
    meta = json.loads((MODELS / "metadata.json").read_text())
    assert body["model"]["model_version"] == meta["model_version"]
    assert body["model"]["metrics"] == meta["metrics"]
    assert body["model"]["samples"] == meta["num_training_samples"]
    assert body["model"]["trained_at"] == meta["trained_at"]
    assert body["model"] == second.json()["model"]
    db = body["database"]
    assert db["reachable"] and db["read_only"] is True
    assert {v["model_version"]: v["rows"] for v in db["versions"]} == dict(
        query(migrated_db_url, "SELECT model_version, count(*) FROM ml_predictions GROUP BY 1")
    )
    assert body["broker"]["reachable"] is True


def test_status_says_what_is_unreachable(migrated_db_url):
    app, pool = build(settings_for("postgresql://nobody:pw@127.0.0.1:1/none"), max_events=5)
    try:
        with TestClient(app) as c:
            body = c.get("/api/status").json()
        assert body["broker"]["reachable"] is False and body["broker"]["error"]
        assert body["database"]["reachable"] is False and "pw" not in json.dumps(body)
        assert c.get("/api/events").status_code == 503
    finally:
        pool.close()


def _score_cli(lines: list[str]) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "streamer", "score", "--models", str(MODELS)],
        cwd=ROOT,
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


LINES = [
    "2024-06-01 12:00:00,123 ERROR [main] connection to db-3 timed out after 3000 ms",
    '{"@timestamp": "2024-06-01T12:00:00Z", "message": "user 7 logged in", "log": {"level": "info"}, '
    '"host": {"name": "web-1"}, "service": {"name": "shop"}}',
    "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
    "OutOfMemoryError: Java heap space in worker-3",
]


def test_analyze_answers_what_logs_scored_carries_decoded_as_run_decodes(client):
    expected = _score_cli(LINES)
    got = client.post("/api/analyze", json={"events": LINES})
    assert got.status_code == 200, got.text
    results = got.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    for r, want in zip(results, expected, strict=False):
        # `streamer score` names the input "-" and counts lines from 0 as its offsets, like the API's indexes
        assert r["scored"]["streamer"].pop("source") == {
            "topic": "api",
            "partition": 0,
            "offset": r["index"],
            "record_index": 0,
        }
        want["streamer"].pop("source")
        assert r["scored"] == want
    # The same events as a text/plain body and as JSON objects score identically.
    plain = client.post("/api/analyze", content="\n".join(LINES), headers={"Content-Type": "text/plain"}).json()
    assert [r["scored"]["streamer"]["severity"] for r in plain["results"]] == [
        r["scored"]["streamer"]["severity"] for r in results
    ]
    as_object = client.post("/api/analyze", json=[json.loads(LINES[1])]).json()["results"][0]["scored"]
    assert as_object["streamer"]["severity"] == results[1]["scored"]["streamer"]["severity"]


def test_analyze_the_original_plans_shape_answers_per_id_and_dead_letters_in_place(client):
    body = {
        "log_data": [
            {"id": 123, "message": "kernel panic: not syncing"},
            {"id": "b", "msg": ""},
            {"id": 7, "message": "GET /health 200"},
        ]
    }
    got = client.post("/api/analyze", json=body).json()
    assert [(r["index"], r["id"]) for r in got["results"]] == [(0, 123), (1, "b"), (2, 7)]
    assert got["results"][1]["dead_letter"]["error_class"] == "no_message"
    assert got["results"][0]["scored"]["message"] == "kernel panic: not syncing"
    assert got["results"][0]["scored"]["streamer"]["model_version"] == got["model_version"]


@pytest.mark.parametrize(
    "kwargs, status, says",
    [
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
        ({"json": {"events": "one"}}, 400, "events must be an array"),
        ({"json": {"events": [1, 2]}}, 400, "event 0 must be a string or an object"),
        ({"json": {"log_data": ["x"]}}, 400, "log_data[0] must be an object"),
        ({"json": {"events": []}}, 400, "no event"),
        ({"json": {"events": ["x"] * 51}}, 413, "51 events is over the limit of 50"),
        ({"json": {"events": ["x" * (1024 * 1024 + 1)]}}, 413, "event 0 is 1048577 bytes"),
        ({"content": b"x" * (60 * 1024 * 1024), "headers": {"Content-Type": "text/plain"}}, 413, "the body is over"),
        ({"content": b"hello", "headers": {"Content-Type": "application/xml"}}, 415, "application/xml"),
        ({"content": b"hello"}, 415, "(none)"),
        ({"content": b"\xff\xfe", "headers": {"Content-Type": "text/plain"}}, 400, "not UTF-8"),
    ],
)
def test_bad_analyze_requests_get_a_clear_error_and_no_stack_trace(client, kwargs, status, says):
    got = client.post("/api/analyze", **kwargs)
    assert got.status_code == status
    assert got.headers["content-type"] == "application/json"
    assert says in got.json()["error"]
    assert "Traceback" not in got.text and ".py" not in got.text


def test_bad_query_parameters_are_400_and_unknown_paths_json_404(client):
    for path, says in [
        ("/api/events?limit=0", "limit"),
        ("/api/events?since=yesterday", "since"),
        ("/api/events?min_severity=urgent", "min_severity"),
        ("/api/events?cursor=AAAA", "cursor"),
        ("/api/summary?window=2y", "window"),
        ("/api/templates?since=1;drop", "since"),
    ]:
        got = client.get(path)
        assert (got.status_code, says in got.json()["error"]) == (400, True), (path, got.text)
    assert client.get("/nope").json() == {"error": "Not Found", "status": 404}
    assert client.get("/api/analyze").status_code == 405


def test_an_internal_error_is_a_500_without_a_trace(migrated_db_url):
    app, pool = build(settings_for(migrated_db_url), max_events=5)

    def broken(settings):
        raise RuntimeError("secret internals at /work/x.py line 3")

    app.state.ctx.broker_report = broken
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            got = c.get("/api/status")
        assert got.status_code == 500
        assert got.json() == {"error": "internal error; see the server log", "status": 500}
    finally:
        pool.close()


def _all_events_sql(url, where="true", params=()):
    return [
        tuple(r)
        for r in query(
            url,
            f"""
        SELECT e.kafka_partition, e.kafka_offset, p.model_version FROM ml_predictions p JOIN log_entries e
        USING (kafka_topic, kafka_partition, kafka_offset, record_index) WHERE {where}
        ORDER BY e.event_time DESC, e.kafka_topic DESC, e.kafka_partition DESC, e.kafka_offset DESC,
                 e.record_index DESC, p.model_version DESC""",
            params,
        )
    ]


def _pages(client, params: str) -> list[tuple]:
    got, cursor, pages = [], None, 0
    while True:
        r = client.get(f"/api/events?limit=7{params}" + (f"&cursor={cursor}" if cursor else "")).json()
        got += [(e["source"]["partition"], e["source"]["offset"], e["model_version"]) for e in r["events"]]
        pages += 1
        cursor = r["next_cursor"]
        if not cursor:
            return got
        assert pages < 50


def test_events_pages_and_filters_equal_sql(client, migrated_db_url):
    fill(migrated_db_url)
    everything = _pages(client, "")
    assert len(everything) == 54 and everything == _all_events_sql(migrated_db_url)  # ties on event_time too
    cases = [
        ("&service=api", "e.service = 'api'"),
        ("&host=h1", "e.host = 'h1'"),
        ("&min_severity=high", "p.severity IN ('high', 'critical')"),
        ("&anomalies=true", "p.is_anomaly"),
        ("&model_version=m-new", "p.model_version = 'm-new'"),
        (
            "&since=2026-01-05T12:00:05&until=2026-01-05T12:00:12Z",
            "e.event_time >= '2026-01-05 12:00:05+00' AND e.event_time < '2026-01-05 12:00:12+00'",
        ),
        (
            "&service=shop&min_severity=medium&model_version=m-old",
            "e.service = 'shop' AND p.severity <> 'low' AND p.model_version = 'm-old'",
        ),
    ]
    for params, where in cases:
        expected = _all_events_sql(migrated_db_url, where)
        assert expected, where  # each filter must select something, or the comparison proves nothing
        assert _pages(client, params) == expected, params
    one = client.get("/api/events?limit=1&service=db").json()["events"][0]
    row = query(
        migrated_db_url,
        "SELECT message, host, severity FROM log_entries JOIN ml_predictions USING "
        "(kafka_topic, kafka_partition, kafka_offset, record_index) WHERE kafka_partition = "
        "%s AND kafka_offset = %s AND model_version = %s",
        (one["source"]["partition"], one["source"]["offset"], one["model_version"]),
    )[0]
    assert (one["message"], one["host"], one["severity"]) == row


def test_summary_totals_and_versions_equal_sql(client, migrated_db_url):
    fill(migrated_db_url)
    s = client.get("/api/summary?window=1h").json()
    assert s["model_version"] == "m-old" or s["model_version"] == "m-new"
    by_version = {v["model_version"]: v for v in s["versions"]}
    for version, n, anomalies in query(
        migrated_db_url,
        "SELECT model_version, count(*), count(*) FILTER (WHERE is_anomaly) FROM ml_predictions GROUP BY 1",
    ):
        assert (by_version[version]["rows"], by_version[version]["anomalies"]) == (n, anomalies)
    old = client.get("/api/summary?window=all&model_version=m-old").json()
    sev = dict(
        query(migrated_db_url, "SELECT severity, count(*) FROM ml_predictions WHERE model_version = 'm-old' GROUP BY 1")
    )
    assert {k: v for k, v in old["totals"]["by_severity"].items() if v} == sev
    charted = {}
    for svc in old["services"]:
        charted[svc["service"]] = sum(p[k] for p in svc["series"] for k in SEVERITY)
    assert charted == dict(
        query(
            migrated_db_url,
            "SELECT service, count(*) FROM ml_predictions JOIN log_entries "
            "USING (kafka_topic, kafka_partition, kafka_offset, record_index) "
            "WHERE model_version = 'm-old' GROUP BY 1",
        )
    )
    assert old["throughput"]["rows_last_60s"] == 54


def test_templates_new_and_surging_are_the_templates_commands_rows(client, migrated_db_url):
    from streamer.commands.templates import SURGING_SQL

    query(
        migrated_db_url,
        "INSERT INTO log_templates VALUES ('a', 'shop', 'user <NUM> in', now() - interval '10 min', now(), 600), "
        "('b', 'db', 'old one', now() - interval '3 days', now(), 50), "
        "('c', 'db', 'gone', now() - interval '3 days', now() - interval '2 days', 5)",
    )
    query(
        migrated_db_url,
        "INSERT INTO log_template_hours VALUES ('a', date_trunc('hour', now()), 600), "
        "('b', date_trunc('hour', now()), 10), ('c', date_trunc('hour', now() - interval '2 days'), 5)",
    )
    new = client.get("/api/templates?kind=new&since=1h").json()["templates"]
    assert [t["template_id"] for t in new] == ["a"]
    surging = client.get("/api/templates?kind=surging&since=1h").json()["templates"]
    expected = query(migrated_db_url, SURGING_SQL, ("1 hours", 20))
    assert [t["template_id"] for t in surging] == [r[0] for r in expected] == ["a", "b"]
    # now() moves between the two queries: the rates agree to well within a percent
    assert [t["surge"] for t in surging] == pytest.approx([float(r[-1]) for r in expected], rel=1e-2)
    assert [t["count"] for t in client.get("/api/templates?kind=top").json()["templates"]] == [600, 50, 5]


def test_the_database_session_is_read_only(client, migrated_db_url):
    import psycopg

    from streamer.api.db import open_pool

    pool = open_pool(migrated_db_url)
    try:
        with pool.connection() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM log_entries")
    finally:
        pool.close()


def test_metrics_count_requests_by_route_and_openapi_is_served(client):
    client.post("/api/analyze", json={"events": ["hello"]})
    client.post("/api/analyze", json={"events": "bad"})
    client.get("/api/events?limit=1&cursor=x")
    text = client.get("/metrics").text
    assert 'streamer_api_requests_total{method="POST",route="/api/analyze",status="200"} 1.0' in text
    assert 'streamer_api_requests_total{method="POST",route="/api/analyze",status="400"} 1.0' in text
    assert 'streamer_api_request_seconds_count{method="POST",route="/api/analyze"} 2.0' in text
    assert "streamer_api_analyzed_events_total 1.0" in text
    spec = client.get("/openapi.json").json()
    assert {"/api/status", "/api/analyze", "/api/events", "/api/summary", "/api/templates"} <= set(spec["paths"])
    assert "text/plain" in spec["paths"]["/api/analyze"]["post"]["requestBody"]["content"]
