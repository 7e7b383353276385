"""Settings from flags and STREAMER_* environment variables (flags win), checked once at start-up.

Every librdkafka property passes through: `--kafka-config key=value` or `STREAMER_KAFKA_<PROPERTY>` with dots
written as underscores (STREAMER_KAFKA_SASL_PASSWORD -> sasl.password), so TLS and SASL need no code here.
Secrets never leave this module unredacted: use redact_url() / redact_config() for anything printed.
Any STREAMER_* variable may instead be given as STREAMER_<NAME>_FILE naming a file that holds the value
(trailing newline stripped) — the way to keep passwords out of `ps` (/proc/PID/cmdline) and of the environment.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from streamer.errors import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_DATABASE_URL = "postgresql://streamer:streamer@127.0.0.1:5432/streamer"

# Properties the process sets itself; passing them through would break the delivery guarantees.
_RESERVED_KAFKA = {"enable.auto.commit", "enable.auto.offset.store", "group.id", "bootstrap.servers"}
_SECRET_KEY = re.compile(r"(password|secret|token|credential|private|\.key$|^sasl\.oauthbearer)", re.I)


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    group_id: str = "streamer"
    input_topic: str = "logs.raw"
    output_topic: str = "logs.scored"
    dlq_topic: str = "logs.deadletter"
    database_url: str = DEFAULT_DATABASE_URL
    models_dir: str = "models"
    batch_max_events: int = 5000
    batch_max_ms: int = 100
    max_message_bytes: int = 1024 * 1024
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    anomaly_threshold: float | None = None
    anomaly_alert_rate: float = 0.05  # unsupervised detector: target share of alerts (its cut's quantile)
    log_format: str = "text"
    message_fields: str = "message,msg,log,MESSAGE,short_message"
    line_format: str = ""  # e.g. "<Date> <Time> <Level> <Component>: <Content>"; empty: built-in formats only
    api_host: str = "127.0.0.1"  # `streamer serve`
    api_port: int = 8080
    api_token: str = field(default="", repr=False)  # bearer token; required for a non-loopback api_host
    templates: str = "off"  # "on": mine a template per event (streamer/templates.py)
    retention: str = ""  # e.g. "30d": daily partitions older than this are dropped (streamer/partitions.py)
    kafka_config: dict[str, str] = field(default_factory=dict)

    def kafka_client_config(self) -> dict[str, str]:
        """Common librdkafka config for consumers, producers and admin clients."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.kafka_config}

    def message_field_names(self) -> tuple[str, ...]:
        """JSON fields that may hold the message, in order of preference (dotted names reach nested ones)."""
        return tuple(f.strip() for f in self.message_fields.split(",") if f.strip())

    def input_topics(self) -> list[str]:
        """`logs.raw`, `a,b,c` or `^regex` (librdkafka subscribes to a regex when the name starts with ^)."""
        if self.input_topic.startswith("^"):
            return [self.input_topic]
        return [t.strip() for t in self.input_topic.split(",") if t.strip()]


# flag dest -> (env var, type, Settings field)
_OPTIONS: dict[str, tuple[str, type]] = {
    "bootstrap_servers": ("STREAMER_BOOTSTRAP_SERVERS", str),
    "group_id": ("STREAMER_GROUP_ID", str),
    "input_topic": ("STREAMER_INPUT_TOPIC", str),
    "output_topic": ("STREAMER_OUTPUT_TOPIC", str),
    "dlq_topic": ("STREAMER_DLQ_TOPIC", str),
    "database_url": ("STREAMER_DATABASE_URL", str),
    "models_dir": ("STREAMER_MODELS_DIR", str),
    "batch_max_events": ("STREAMER_BATCH_MAX_EVENTS", int),
    "batch_max_ms": ("STREAMER_BATCH_MAX_MS", int),
    "max_message_bytes": ("STREAMER_MAX_MESSAGE_BYTES", int),
    "metrics_port": ("STREAMER_METRICS_PORT", int),
    "metrics_host": ("STREAMER_METRICS_HOST", str),
    "anomaly_threshold": ("STREAMER_ANOMALY_THRESHOLD", float),
    "anomaly_alert_rate": ("STREAMER_ANOMALY_ALERT_RATE", float),
    "log_format": ("STREAMER_LOG_FORMAT", str),
    "message_fields": ("STREAMER_MESSAGE_FIELDS", str),
    "line_format": ("STREAMER_LINE_FORMAT", str),
    "api_host": ("STREAMER_API_HOST", str),
    "api_port": ("STREAMER_API_PORT", int),
    "api_token": ("STREAMER_API_TOKEN", str),
    "retention": ("STREAMER_RETENTION", str),
    "templates": ("STREAMER_TEMPLATES", str),
}


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every command that talks to Kafka or PostgreSQL accepts."""
    g = parser.add_argument_group("connections")
    g.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help=f"Kafka bootstrap servers (STREAMER_BOOTSTRAP_SERVERS, default {DEFAULT_BOOTSTRAP})",
    )
    g.add_argument(
        "--database-url",
        metavar="URL",
        help="PostgreSQL URL (STREAMER_DATABASE_URL or STREAMER_DATABASE_URL_FILE, default "
        f"{redact_url(DEFAULT_DATABASE_URL)}); flags show in ps: pass passwords by file",
    )
    g.add_argument(
        "--kafka-config",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="any librdkafka property, repeatable (also STREAMER_KAFKA_<PROPERTY>, dots as _; "
        "secrets as STREAMER_KAFKA_<PROPERTY>_FILE=/path, out of ps)",
    )


def add_topic_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("topics")
    g.add_argument(
        "--input-topic",
        metavar="TOPIC",
        help="topic(s) to consume: name, a,b,c or ^regex (STREAMER_INPUT_TOPIC, default logs.raw)",
    )
    g.add_argument("--output-topic", metavar="TOPIC", help="scored events (STREAMER_OUTPUT_TOPIC, default logs.scored)")
    g.add_argument("--dlq-topic", metavar="TOPIC", help="dead letters (STREAMER_DLQ_TOPIC, default logs.deadletter)")


def settings_from_args(args: argparse.Namespace | None = None, env: os._Environ | dict | None = None) -> Settings:
    """Build Settings: flag, else environment variable, else default. Raises ConfigError on a bad value."""
    env = _read_file_variables(os.environ if env is None else env)
    values: dict[str, object] = {}
    for dest, (var, typ) in _OPTIONS.items():
        raw = getattr(args, dest, None) if args is not None else None
        source = f"--{dest.replace('_', '-')}"
        if raw is None and env.get(var, "") != "":
            raw, source = env[var], var
        if raw is None:
            continue
        try:
            values[dest] = typ(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}={raw!r} is not a valid {typ.__name__}") from None
    values["kafka_config"] = _kafka_passthrough(getattr(args, "kafka_config", None) or [], env)
    settings = Settings(**values)  # type: ignore[arg-type]  # each value was converted by its _OPTIONS type
    _check(settings)
    return settings


def _read_file_variables(env) -> dict[str, str]:
    """STREAMER_X_FILE=/path -> STREAMER_X=<the file's text, trailing newline stripped>, for every STREAMER_*
    variable (settings and STREAMER_KAFKA_* passthrough alike). Giving both X and X_FILE is an error."""
    resolved = {var: value for var, value in env.items() if not (var.startswith("STREAMER_") and var.endswith("_FILE"))}
    for var, path in env.items():
        if not (var.startswith("STREAMER_") and var.endswith("_FILE")) or path == "":
            continue
        target = var[: -len("_FILE")]
        if env.get(target, "") != "":
            raise ConfigError(f"both {target} and {var} are set; give one")
        try:
            with open(path, encoding="utf-8") as f:
                resolved[target] = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{var}: cannot read {path!r}: {getattr(err, 'strerror', None) or err}") from None
    return resolved


def _kafka_passthrough(pairs: list[str], env) -> dict[str, str]:
    config: dict[str, str] = {}
    for var, value in env.items():
        if var.startswith("STREAMER_KAFKA_") and value != "":
            config[var[len("STREAMER_KAFKA_") :].lower().replace("_", ".")] = value
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--kafka-config expects KEY=VALUE, got {_redact_pair(pair)!r}")
        if not _PROPERTY.match(key.strip()):
            raise ConfigError(f"--kafka-config: {_redact_pair(pair)!r} does not start with a property name")
        config[key.strip()] = value
    reserved = sorted(_RESERVED_KAFKA & config.keys())
    if reserved:
        raise ConfigError(f"librdkafka property {reserved[0]} is set by streamer itself; use its own flag")
    return config


def _check(s: Settings) -> None:
    if s.batch_max_events < 1:
        raise ConfigError(f"batch max events must be >= 1, got {s.batch_max_events}")
    if s.batch_max_ms < 1:
        raise ConfigError(f"batch max ms must be >= 1, got {s.batch_max_ms}")
    if s.max_message_bytes < 1:
        raise ConfigError(f"max message bytes must be >= 1, got {s.max_message_bytes}")
    if s.templates not in ("on", "off"):
        raise ConfigError(f"STREAMER_TEMPLATES={s.templates!r}: expected on or off")
    if s.retention:
        from streamer.partitions import parse_retention

        parse_retention(s.retention)  # raises ConfigError naming the variable
    if s.line_format:
        from streamer.lineformats import compile_line_format

        try:
            compile_line_format(s.line_format)
        except (ValueError, re.error) as err:
            raise ConfigError(f"STREAMER_LINE_FORMAT: {err}") from None
    if s.metrics_port is not None and not 0 <= s.metrics_port <= 65535:
        raise ConfigError(f"metrics port must be 0..65535, got {s.metrics_port}")
    if not 0 <= s.api_port <= 65535:
        raise ConfigError(f"API port must be 0..65535, got {s.api_port}")
    if s.anomaly_threshold is not None and not 0.0 <= s.anomaly_threshold <= 1.0:
        raise ConfigError(f"anomaly threshold must be within 0..1, got {s.anomaly_threshold}")
    if not 0.0 < s.anomaly_alert_rate < 1.0:
        raise ConfigError(f"anomaly alert rate must be within (0, 1) exclusive, got {s.anomaly_alert_rate}")
    if not s.metrics_host.strip():
        raise ConfigError("metrics host is empty")
    if s.log_format not in ("text", "json"):
        raise ConfigError(f"log format must be text or json, got {s.log_format!r}")
    if not s.bootstrap_servers.strip():
        raise ConfigError("bootstrap servers are empty")
    if not s.input_topics():
        raise ConfigError("no input topic given")
    if not s.message_field_names():
        raise ConfigError("no message field given")
    scheme = urlsplit(s.database_url).scheme
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"database URL must start with postgresql://, got {redact_url(s.database_url)!r}")


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_config(config: dict[str, str]) -> dict[str, str]:
    return {k: ("***" if is_secret_key(k) else v) for k, v in config.items()}


_PROPERTY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _redact_pair(pair: str) -> str:
    """A KEY=VALUE pair fit to print: the value hidden for a secret key; for text that is not KEY=VALUE,
    only its leading property-like name (what follows may be a password typed with ':' or ' ')."""
    key, sep, _ = pair.partition("=")
    if sep and _PROPERTY.match(key.strip()):
        return f"{key}=***" if is_secret_key(key) else pair
    name = re.match(r"[A-Za-z0-9._-]*", pair).group(0)  # type: ignore[union-attr]  # * matches any text
    return f"{name}…" if name != pair else pair


def redact_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db (also password= in the query)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = re.sub(r"(password=)[^&]*", r"\1***", parts.query, flags=re.I)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
