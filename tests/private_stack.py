"""A test-owned Kafka broker and PostgreSQL cluster, for faults the shared `make up` stack must not suffer.

PrivateKafka runs a second single-node KRaft broker from the same jars as scripts/kafka.sh (.stack/kafka/lib)
on free ports, with its own data directory and listeners:

- INTERNAL (PLAINTEXT): the test's own admin, producer and read-back; never cut.
- PROXIED (PLAINTEXT): reached through a TcpProxy that the broker *advertises*, so a client that bootstraps
  there reconnects through the proxy too and cutting it is a real broker outage for that client.
- SSL and SASL_SSL (SCRAM-SHA-256, user `streamer`): a PEM keystore signed by the suite's TestCA.

PrivatePostgres is an initdb'd cluster on a free port with ssl=on and TLS-only host logins. Both are started
once per test session (private_kafka / private_postgres) and stopped when it ends.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from testkit.clients import free_port
from testkit.pipeline import ROOT
from testkit.proxies import TcpProxy

KAFKA_LIB = ROOT / ".stack" / "kafka" / "lib"
LOG4J = ROOT / "scripts" / "kafka" / "log4j2.properties"
SCRAM_USER, SCRAM_PASSWORD = "streamer", "scram-" + uuid.uuid4().hex[:12]
PG_USER, PG_PASSWORD = "streamer", "pg-" + uuid.uuid4().hex[:12]


class TestCA:
    """A throwaway certificate authority (the `cryptography` package) and server certificates it signs."""

    __test__ = False  # not a test class

    def __init__(self, directory: Path, name: str = "streamer test CA"):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} {uuid.uuid4().hex[:6]}")])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = self.dir / "ca.pem"
        self.cert_path.write_bytes(self._pem(self._cert))

    @staticmethod
    def _pem(cert) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, hosts=("127.0.0.1", "localhost")) -> tuple[Path, Path]:
        """(certificate chain PEM, unencrypted PKCS#8 key PEM) for a server answering as `hosts` (SANs)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        sans = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        cert_path, key_path = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert_path.write_bytes(self._pem(cert) + self._pem(self._cert))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path


def _wait(predicate, timeout: float, what: str, alive=None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process exited\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f}s\n{tail}")
        time.sleep(0.3)


class PrivateKafka:
    def __init__(self, ca: TestCA, workdir: Path):
        if not list(KAFKA_LIB.glob("kafka_2.13-*.jar")):
            raise RuntimeError(
                f"no Kafka jars in {KAFKA_LIB}: run `scripts/kafka.sh fetch` (make up does when it "
                "starts the broker itself)"
            )
        if not shutil.which("java"):
            raise RuntimeError("java not found: the private broker needs a Java 17+ runtime")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.internal_port, self.proxied_port, self.ssl_port, self.sasl_ssl_port, controller = (
            free_port() for _ in range(5)
        )
        self.proxy = TcpProxy("127.0.0.1", self.proxied_port)
        self.ca = ca
        cert, key = ca.issue("kafka")
        keystore = self.dir / "keystore.pem"  # Kafka's PEM keystore: the key, then the certificate chain
        keystore.write_bytes(key.read_bytes() + cert.read_bytes())
        keystore.chmod(0o600)
        h = "127.0.0.1"
        conf = self.dir / "server.properties"
        conf.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{h}:{controller}",
                    "controller.listener.names=CONTROLLER",
                    f"listeners=INTERNAL://{h}:{self.internal_port},PROXIED://{h}:{self.proxied_port},"
                    f"SSL://{h}:{self.ssl_port},SASL_SSL://{h}:{self.sasl_ssl_port},CONTROLLER://{h}:{controller}",
                    # The proxied listener is advertised at the proxy: every connection of its clients goes through it.
                    f"advertised.listeners=INTERNAL://{h}:{self.internal_port},PROXIED://{h}:{self.proxy.port},"
                    f"SSL://{h}:{self.ssl_port},SASL_SSL://{h}:{self.sasl_ssl_port}",
                    "listener.security.protocol.map=INTERNAL:PLAINTEXT,PROXIED:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,"
                    "CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=INTERNAL",
                    "ssl.keystore.type=PEM",
                    f"ssl.keystore.location={keystore}",
                    "ssl.client.auth=none",
                    "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256",
                    "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                    f"log.dirs={self.dir / 'data'}",
                    "num.partitions=1",
                    "default.replication.factor=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=3",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "",
                ]
            )
        )
        self.log = self.dir / "stdout.log"
        jvm = [
            "java",
            "-Xms128m",
            "-Xmx384m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={LOG4J}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}",
            "-cp",
            f"{KAFKA_LIB}/*",
        ]
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # SCRAM credentials are written into the metadata log at format time (KRaft).
        subprocess.run(
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(conf),
                "--add-scram",
                f"SCRAM-SHA-256=[name={SCRAM_USER},password={SCRAM_PASSWORD}]",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(conf)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait(
            self._answers,
            120,
            "private Kafka broker",
            alive=lambda: self.proc.poll() is None,
            log=self.dir / "logs" / "server.log",
        )

    @property
    def bootstrap(self) -> str:
        """The test's own, never-cut listener."""
        return f"127.0.0.1:{self.internal_port}"

    @property
    def proxied_bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"

    def ssl_config(self, ca_path: Path | None = None) -> dict[str, str]:
        return {
            "bootstrap.servers": f"127.0.0.1:{self.ssl_port}",
            "security.protocol": "SSL",
            "ssl.ca.location": str(ca_path or self.ca.cert_path),
            "ssl.endpoint.identification.algorithm": "https",
        }

    def sasl_ssl_config(self) -> dict[str, str]:
        return {
            **self.ssl_config(),
            "bootstrap.servers": f"127.0.0.1:{self.sasl_ssl_port}",
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": SCRAM_USER,
            "sasl.password": SCRAM_PASSWORD,
        }

    def _answers(self) -> bool:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        try:
            return bool(
                AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0}).list_topics(timeout=2).brokers
            )
        except KafkaException:
            return False

    def stop(self) -> None:
        self.proxy.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bindir() -> Path:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries (initdb): apt-get install -y postgresql")
    return versions[-1].parent


class PrivatePostgres:
    """initdb + pg_ctl on a free port, ssl=on, host logins only over TLS (hostssl, scram-sha-256)."""

    def __init__(self, ca: TestCA):
        self.bindir = _pg_bindir()
        # initdb refuses to run as root: the cluster belongs to `postgres` then, in a directory it can reach.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.dir = Path(tempfile.mkdtemp(prefix="streamer-test-pg-"))
        self.data = self.dir / "data"
        cert, key = ca.issue("postgres")
        shutil.copy(cert, self.dir / "server.crt")
        shutil.copy(key, self.dir / "server.key")
        (self.dir / "server.key").chmod(0o600)
        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")
            for f in ("server.crt", "server.key"):
                shutil.chown(self.dir / f, "postgres", "postgres")
        self.port = free_port()
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=reject",
            "-E",
            "UTF8",
            "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                f"ssl = on\nssl_cert_file = '{self.dir / 'server.crt'}'\nssl_key_file = '{self.dir / 'server.key'}'\n"
                "fsync = off\nshared_buffers = 32MB\nmax_connections = 40\n"
            )
        (self.data / "pg_hba.conf").write_text(
            "local all postgres trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        self._admin(f"CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}'")
        self._admin(f"CREATE DATABASE streamer OWNER {PG_USER}")

    def _run(self, *cmd: str) -> None:
        done = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=120, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {(done.stderr or done.stdout).strip()[-1500:]}")

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=str(self.dir), port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def url(self, ca_path: Path, sslmode: str = "verify-full", host: str = "127.0.0.1") -> str:
        return (
            f"postgresql://{PG_USER}:{PG_PASSWORD}@{host}:{self.port}/streamer?sslmode={sslmode}&sslrootcert={ca_path}"
        )

    def stop(self) -> None:
        subprocess.run(
            [*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
            cwd=self.dir,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


# One of each per session, shared by every test module that asks (each module's fixture finds the same one).
_started: dict[str, object] = {}
_start_lock = threading.Lock()


def _once(request, name: str, make):
    with _start_lock:
        if name not in _started:
            try:
                _started[name] = make()
            except (RuntimeError, subprocess.SubprocessError, OSError) as err:
                pytest.fail(f"cannot start the {name}: {err}", pytrace=False)
            request.session.config.add_cleanup(lambda: _started.pop(name).stop())
        return _started[name]


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> TestCA:
    return _once_ca(tmp_path_factory)


def _once_ca(tmp_path_factory) -> TestCA:
    with _start_lock:
        if "ca" not in _started:
            _started["ca"] = TestCA(tmp_path_factory.mktemp("tls"))
        return _started["ca"]  # type: ignore[return-value]


@pytest.fixture(scope="session")
def private_kafka(request, test_ca, tmp_path_factory) -> PrivateKafka:
    return _once(request, "private Kafka broker", lambda: PrivateKafka(test_ca, tmp_path_factory.mktemp("kafka")))


@pytest.fixture(scope="session")
def private_postgres(request, test_ca) -> PrivatePostgres:
    return _once(request, "private PostgreSQL cluster", lambda: PrivatePostgres(test_ca))


@pytest.fixture
def private_topics(request, private_kafka):
    """Fresh topics on the private broker (.raw 6 partitions, .scored 6, .deadletter 1); deleted afterwards."""
    from streamer.kafka_admin import delete_topics, ensure_topics
    from tests.conftest import TestTopics

    base = f"p-{request.node.name[:24].lower().replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    t = TestTopics(f"{base}.raw", f"{base}.scored", f"{base}.deadletter", f"g-{base}")
    config = {"bootstrap.servers": private_kafka.bootstrap}
    ensure_topics(config, {t.raw: 6, t.scored: 6, t.deadletter: 1})
    yield t
    delete_topics(config, t.names)


def streamer_env_for(topics, bootstrap: str, database_url: str, **extra: str) -> dict[str, str]:
    """os.environ without STREAMER_*, plus what points a `streamer run` at these topics, group and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update(
        {
            "STREAMER_BOOTSTRAP_SERVERS": bootstrap,
            "STREAMER_DATABASE_URL": database_url,
            "STREAMER_INPUT_TOPIC": topics.raw,
            "STREAMER_OUTPUT_TOPIC": topics.scored,
            "STREAMER_DLQ_TOPIC": topics.deadletter,
            "STREAMER_GROUP_ID": topics.group,
            **extra,
        }
    )
    return env
