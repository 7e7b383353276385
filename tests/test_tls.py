"""The pipeline over TLS end to end (issue 11 item 8): a CA made by the suite signs the certificates of a
private broker (SSL and SASL_SSL/SCRAM listeners) and of a private PostgreSQL with ssl=on that accepts host
logins over TLS only (tests/private_stack.py). `streamer run` verifies both: ssl.ca.location with hostname
verification for Kafka, sslmode=verify-full with sslrootcert for PostgreSQL. A wrong CA is one clear line."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from testkit.checks import check_delivery, wait_caught_up
from testkit.clients import consume_all, produce, query, with_search_path
from testkit.pipeline import ROOT, StreamerProcess, mixed_values
from tests.private_stack import TestCA, streamer_env_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def tls_db_url(private_postgres, test_ca):
    """verify-full URL of a fresh, migrated schema on the private PostgreSQL."""
    from streamer.db import connect
    from streamer.db.migrations import migrate

    base = private_postgres.url(test_ca.cert_path)
    schema = f"t_{uuid.uuid4().hex[:10]}"
    query(base, f'CREATE SCHEMA "{schema}"')
    url = with_search_path(base, schema)
    with connect(url) as conn:
        migrate(conn)
    yield url
    query(base, f'DROP SCHEMA "{schema}" CASCADE')


def kafka_env(kafka_config: dict[str, str], secret_dir) -> dict[str, str]:
    """STREAMER_* for a librdkafka config; the SASL password through a file, as README advises (out of ps)."""
    env = {}
    for key, value in kafka_config.items():
        if key == "bootstrap.servers":
            continue
        var = "STREAMER_KAFKA_" + key.upper().replace(".", "_")
        if key == "sasl.password":
            path = secret_dir / "sasl-password"
            path.write_text(value + "\n")
            env[var + "_FILE"] = str(path)
        else:
            env[var] = value
    return env


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_pipeline_over_tls_end_to_end(protocol, private_kafka, private_topics, tls_db_url, private_postgres, tmp_path):
    kafka, topics = private_kafka, private_topics
    config = kafka.ssl_config() if protocol == "SSL" else kafka.sasl_ssl_config()
    env = streamer_env_for(topics, config["bootstrap.servers"], tls_db_url, **kafka_env(config, tmp_path))
    values, invalid = mixed_values(1500)
    coords = produce(kafka.bootstrap, topics.raw, values[:1000])
    proc = StreamerProcess(env, tmp_path / "streamer.log")
    try:
        proc.wait_ready()
        coords += produce(kafka.bootstrap, topics.raw, values[1000:])
        wait_caught_up(kafka.bootstrap, topics, [proc])
        # The member's own sessions are encrypted (pg_hba refuses any other host login anyway).
        sessions = query(
            tls_db_url,
            "select s.ssl, s.version from pg_stat_ssl s join pg_stat_activity a "
            "using (pid) where a.usename = 'streamer' and a.pid <> pg_backend_pid()",
        )
        assert sessions and all(ssl for ssl, _ in sessions), sessions
        assert proc.terminate() == 0, proc.output()[-3000:]
    finally:
        proc.close()
    check_delivery(kafka.bootstrap, topics, tls_db_url, coords, values, invalid)
    # Read back over TLS too: the output topic is reachable with the same client settings.
    assert len(consume_all(config["bootstrap.servers"], topics.scored, config=config)) >= 1000 * 49 // 50


def refused_in_one_line(env: dict[str, str]) -> str:
    """Run `streamer run` to its end; it must stop soon (not retry for ever, nor wait out the start-up
    database wait) with exactly one `streamer run:` line and no traceback. Returns that line."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run"],
        env={**env, "STREAMER_MODELS_DIR": "models"},
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    took = time.monotonic() - started
    assert done.returncode == 2 and took < 30, f"exit {done.returncode} after {took:.0f}s:\n{done.stderr[-3000:]}"
    lines = [line for line in done.stderr.splitlines() if line.startswith("streamer run:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return lines[0]


def test_a_wrong_kafka_ca_is_one_clear_line(private_kafka, private_topics, tls_db_url, tmp_path):
    other = TestCA(tmp_path / "other-ca", name="not the broker's CA")
    config = private_kafka.ssl_config(other.cert_path)
    env = streamer_env_for(private_topics, config["bootstrap.servers"], tls_db_url, **kafka_env(config, tmp_path))
    assert "certificate verify failed" in refused_in_one_line(env)


def test_a_wrong_postgres_ca_is_one_clear_line(private_kafka, private_topics, private_postgres, tmp_path):
    other = TestCA(tmp_path / "other-ca", name="not the database's CA")
    config = private_kafka.ssl_config()
    env = streamer_env_for(
        private_topics,
        config["bootstrap.servers"],
        private_postgres.url(other.cert_path),
        **kafka_env(config, tmp_path),
    )
    assert "certificate verify failed" in refused_in_one_line(env)


def test_a_wrong_sasl_password_is_one_clear_line(private_kafka, private_topics, tls_db_url, tmp_path):
    config = {**private_kafka.sasl_ssl_config(), "sasl.password": "not-the-password"}
    env = streamer_env_for(private_topics, config["bootstrap.servers"], tls_db_url, **kafka_env(config, tmp_path))
    line = refused_in_one_line(env)
    assert "Authentication failed" in line and "not-the-password" not in line, line
