"""Test fixtures: the real Kafka broker and PostgreSQL, one fresh schema and fresh topics per test.

Where the services come from, first match wins:
1. STREAMER_TEST_BOOTSTRAP_SERVERS / STREAMER_TEST_DATABASE_URL (each on its own);
2. testcontainers (Kafka + Postgres) when a Docker engine answers;
3. the `make up` stack: 127.0.0.1:9092 and postgresql://streamer:streamer@127.0.0.1:5432/streamer.
A service that does not answer fails the integration tests that need it, with a message saying what to run.
Unit tests request none of these fixtures and need no service.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass

import pytest

from testkit.clients import (
    LOCAL_BOOTSTRAP,
    LOCAL_DATABASE_URL,
    LOCAL_SASL_BOOTSTRAP,
    free_port,
    query,
    with_search_path,
)
from testkit.pipeline import StreamerProcess
from testkit.proxies import TcpProxy

# A private broker and PostgreSQL (TLS, outages): fixtures shared by the TLS and broker-outage tests.
from tests.private_stack import private_kafka, private_postgres, private_topics, test_ca  # noqa: F401

KAFKA_IMAGE = "apache/kafka:4.1.1"  # same release as pom.xml
POSTGRES_IMAGE = "postgres:15"


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="session")
def _docker() -> bool:
    return _docker_answers()


def _kafka_answers(bootstrap: str, timeout: float = 10.0) -> str | None:
    """None when a broker answers a metadata request, else the reason."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=timeout)
        return None if md.brokers else "no brokers in metadata"
    except KafkaException as err:
        return err.args[0].str()


def _start_kafka_container(request) -> str:
    """The official apache/kafka image (same release as pom.xml), KRaft single node, via testcontainers.

    The host port is chosen first and mapped 1:1, so the advertised listener is the address clients use.
    (testcontainers' own KafkaContainer only drives Confluent images.)
    """
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(port, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENERS=f"PLAINTEXT://:{port},CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://127.0.0.1:{port}",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
        )
    )
    container.start()
    request.addfinalizer(container.stop)
    wait_for_logs(container, "Kafka Server started", timeout=120)
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def kafka_bootstrap(request, _docker) -> str:
    """bootstrap.servers of the test broker (session-wide; tests isolate themselves with unique topics)."""
    bootstrap = os.environ.get("STREAMER_TEST_BOOTSTRAP_SERVERS", "")
    source = "STREAMER_TEST_BOOTSTRAP_SERVERS"
    if not bootstrap and _docker:
        bootstrap, source = _start_kafka_container(request), "testcontainers"
    if not bootstrap:
        bootstrap, source = LOCAL_BOOTSTRAP, "the make up stack"
    reason = _kafka_answers(bootstrap)
    if reason is not None:
        pytest.fail(
            f"no Kafka broker answers at {bootstrap} ({source}): {reason}. Run `make up`, or set "
            "STREAMER_TEST_BOOTSTRAP_SERVERS, or start a Docker engine for testcontainers.",
            pytrace=False,
        )
    return bootstrap


@pytest.fixture(scope="session")
def kafka_sasl_config(kafka_bootstrap) -> dict[str, str]:
    """librdkafka config for the broker's SASL_PLAINTEXT/PLAIN listener (the make up stack's port 9094).

    Override with STREAMER_TEST_SASL_BOOTSTRAP_SERVERS (+ STREAMER_TEST_SASL_USERNAME/PASSWORD); skipped when
    the broker came from elsewhere and no SASL listener is named.
    """
    bootstrap = os.environ.get("STREAMER_TEST_SASL_BOOTSTRAP_SERVERS", "")
    if not bootstrap:
        if kafka_bootstrap != LOCAL_BOOTSTRAP:
            pytest.skip("the test broker has no known SASL listener; set STREAMER_TEST_SASL_BOOTSTRAP_SERVERS")
        bootstrap = LOCAL_SASL_BOOTSTRAP
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": os.environ.get("STREAMER_TEST_SASL_USERNAME", "streamer"),
        "sasl.password": os.environ.get("STREAMER_TEST_SASL_PASSWORD", "streamer-secret"),
    }


@pytest.fixture(scope="session")
def database_url(request, _docker) -> str:
    """URL of the test database (session-wide). Tests use db_url / migrated_db_url for their own schema."""
    url = os.environ.get("STREAMER_TEST_DATABASE_URL", "")
    source = "STREAMER_TEST_DATABASE_URL"
    if not url and _docker:
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer(
            POSTGRES_IMAGE, username="streamer", password="streamer", dbname="streamer", driver=None
        )
        container.start()
        request.addfinalizer(container.stop)
        url, source = container.get_connection_url(), "testcontainers"
    if not url:
        url, source = LOCAL_DATABASE_URL, "the make up stack"
    try:
        query(url, "select 1")
    except Exception as err:
        from streamer.config import redact_url

        reason = " ".join(str(err).split())[:300]
        pytest.fail(
            f"PostgreSQL at {redact_url(url)} ({source}) does not answer: {reason}. Run `make up`, or set "
            "STREAMER_TEST_DATABASE_URL, or start a Docker engine for testcontainers.",
            pytrace=False,
        )
    return url


def _short_name(request, limit: int = 20) -> str:
    return re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:limit].strip("-") or "test"


@pytest.fixture
def db_url(request, database_url) -> str:
    """URL whose search_path is a fresh empty schema of this test's own; the schema is dropped afterwards."""
    schema = f"t_{_short_name(request).replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    query(database_url, f'CREATE SCHEMA "{schema}"')
    yield with_search_path(database_url, schema)
    query(database_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def migrated_db_url(db_url) -> str:
    """db_url with every migration applied."""
    from streamer.db import connect
    from streamer.db.migrations import migrate

    with connect(db_url) as conn:
        migrate(conn)
    return db_url


@dataclass(frozen=True)
class TestTopics:
    raw: str
    scored: str
    deadletter: str
    group: str  # a consumer group id no other test uses

    @property
    def names(self) -> list[str]:
        return [self.raw, self.scored, self.deadletter]


@pytest.fixture
def topics(request, kafka_bootstrap) -> TestTopics:
    """Fresh topics for this test: .raw (6 partitions), .scored (6), .deadletter (1); deleted afterwards."""
    from streamer.kafka_admin import delete_topics, ensure_topics

    base = f"t-{_short_name(request)}-{uuid.uuid4().hex[:8]}"
    t = TestTopics(f"{base}.raw", f"{base}.scored", f"{base}.deadletter", f"g-{base}")
    config = {"bootstrap.servers": kafka_bootstrap}
    ensure_topics(config, {t.raw: 6, t.scored: 6, t.deadletter: 1})
    yield t
    delete_topics(config, t.names)


@pytest.fixture
def streamer_env(kafka_bootstrap, topics, migrated_db_url) -> dict[str, str]:
    """os.environ plus STREAMER_* pointing a `streamer` subprocess at this test's topics, group and schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update(
        {
            "STREAMER_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "STREAMER_DATABASE_URL": migrated_db_url,
            "STREAMER_INPUT_TOPIC": topics.raw,
            "STREAMER_OUTPUT_TOPIC": topics.scored,
            "STREAMER_DLQ_TOPIC": topics.deadletter,
            "STREAMER_GROUP_ID": topics.group,
        }
    )
    return env


@pytest.fixture
def start(streamer_env, tmp_path):
    procs: list[StreamerProcess] = []

    def _start(*args: str, env: dict | None = None) -> StreamerProcess:
        p = StreamerProcess({**streamer_env, **(env or {})}, tmp_path / f"streamer-{len(procs)}.log", *args)
        procs.append(p)
        return p

    yield _start
    for p in procs:
        p.close()


@pytest.fixture
def db_proxy(migrated_db_url):
    """A TCP proxy in front of the test's real database, and the database URL through it."""
    from urllib.parse import urlsplit

    target = urlsplit(migrated_db_url)
    proxy = TcpProxy(target.hostname, target.port or 5432)
    yield proxy, migrated_db_url.replace(f"{target.hostname}:{target.port or 5432}", f"127.0.0.1:{proxy.port}")
    proxy.close()


# Fixtures that reach the real broker or database; a test that requests any of them (directly or through
# another fixture) is an integration test, whatever its module says, so `make unit` never needs the stack.
_STACK_FIXTURES = frozenset({"kafka_bootstrap", "database_url"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _STACK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
