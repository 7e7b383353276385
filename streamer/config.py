"""Settings from flags and STREAMER_* environment variables (flags win), checked once at start-up.

Each setting is declared once, on its `Settings` field (`setting(default, help, bounds…)`): its environment
variable (STREAMER_<NAME>), its flag, its --help text, its checks and its row in README's configuration table
(`python -m streamer.config --readme README.md` rewrites it) are all made from that declaration.

Every librdkafka property passes through: `--kafka-config key=value` or `STREAMER_KAFKA_<PROPERTY>` with dots
written as underscores (STREAMER_KAFKA_SASL_PASSWORD -> sasl.password), so TLS and SASL need no code here.
Secrets never leave this module unredacted: use redact_url() / redact_config() for anything printed.
Any STREAMER_* variable may instead be given as STREAMER_<NAME>_FILE naming a file that holds the value
(trailing newline stripped) — the way to keep passwords out of `ps` (/proc/PID/cmdline) and of the environment.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit, urlunsplit

from streamer.errors import ConfigError

ENV_PREFIX = "STREAMER_"

# Properties the process sets itself; passing them through would break the delivery guarantees.
_RESERVED_KAFKA = {"enable.auto.commit", "enable.auto.offset.store", "group.id", "bootstrap.servers"}
_SECRET_KEY = re.compile(r"(password|secret|token|credential|private|\.key$|^sasl\.oauthbearer)", re.I)
_PROPERTY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
KAFKA_PASSTHROUGH_HELP = (
    "any librdkafka property, dots written as `_` (e.g. `STREAMER_KAFKA_SASL_PASSWORD` → `sasl.password`); "
    "also `--kafka-config KEY=VALUE`, repeatable, which wins; secrets as `STREAMER_KAFKA_<PROPERTY>_FILE=/path`, out of `ps`. "
    "TLS and SASL need nothing else."
)


@dataclass(frozen=True)
class Declared:
    """What a setting means to its user; everything shown or checked about it is made from this."""

    help: str
    metavar: str | None = None
    flags: tuple[str, ...] | None = None  # None: --<name-with-dashes>; (): environment only
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()
    nonempty: bool = False
    check: Callable[[typing.Any], str | None] | None = None  # what is wrong with a value, None when nothing
    secret: bool = False  # may hold a password: never in repr, shown redacted, best given as STREAMER_<NAME>_FILE
    shown_default: str | None = None  # how the default reads when its value says too little (None, "")


def setting(
    default: object,
    help: str,
    *,
    metavar: str | None = None,
    flags: tuple[str, ...] | None = None,
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] = (),
    nonempty: bool = False,
    check: Callable[[typing.Any], str | None] | None = None,
    secret: bool = False,
    shown_default: str | None = None,
) -> typing.Any:
    """A Settings field carrying its declaration (typed Any so that mypy takes it as the field's default)."""
    declared = Declared(help, metavar, flags, ge, le, gt, lt, choices, nonempty, check, secret, shown_default)
    return field(default=default, repr=not secret, metadata={"setting": declared})


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _topics(text: str) -> list[str]:
    """`logs.raw`, `a,b,c` or `^regex` (librdkafka subscribes to a regex when the name starts with ^)."""
    return [text] if text.startswith("^") else _split(text)


def _input_topic_problem(text: str) -> str | None:
    return None if _topics(text) else "no input topic given"


def _message_fields_problem(text: str) -> str | None:
    return None if _split(text) else "no message field given"


def _database_url_problem(url: str) -> str | None:
    if urlsplit(url).scheme in ("postgresql", "postgres"):
        return None
    return f"database URL must start with postgresql://, got {redact_url(url)!r}"


def _line_format_problem(fmt: str) -> str | None:
    if not fmt:
        return None
    from streamer.lineformats import compile_line_format

    try:
        compile_line_format(fmt)
    except (ValueError, re.error) as err:
        return str(err)
    return None


def _retention_problem(text: str) -> str | None:
    from streamer.partitions import parse_retention

    parse_retention(text)  # its ConfigError already names STREAMER_RETENTION and the value
    return None


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = setting("127.0.0.1:9092", "Kafka bootstrap servers", metavar="HOST:PORT", nonempty=True)
    group_id: str = setting("streamer", "consumer group", metavar="GROUP")
    input_topic: str = setting(
        "logs.raw",
        "topic(s) to consume: a name, `a,b,c`, or `^regex`",
        metavar="TOPIC",
        check=_input_topic_problem,
    )
    output_topic: str = setting("logs.scored", "scored events", metavar="TOPIC")
    dlq_topic: str = setting(
        "logs.deadletter", "dead letters: records that cannot be decoded, scored or stored", metavar="TOPIC"
    )
    database_url: str = setting(
        "postgresql://streamer:streamer@127.0.0.1:5432/streamer",
        "PostgreSQL URL, printed with its password redacted",
        metavar="URL",
        secret=True,
        check=_database_url_problem,
    )
    models_dir: str = setting("models", "model directory", metavar="DIR", flags=("--models", "--models-dir"))
    batch_max_events: int = setting(5000, "largest micro-batch, in events", metavar="N", ge=1)
    batch_max_ms: int = setting(100, "longest a batch waits to fill, in milliseconds", metavar="MS", ge=1)
    max_message_bytes: int = setting(1024 * 1024, "larger records go to the dead-letter topic", metavar="BYTES", ge=1)
    metrics_port: int | None = setting(
        None,
        "port of `/metrics`, `/healthz`, `/readyz`",
        metavar="PORT",
        ge=0,
        le=65535,
        shown_default="unset (off)",
    )
    metrics_host: str = setting(
        "127.0.0.1",
        "address those endpoints bind to; `0.0.0.0` for every interface, as docker-compose.yml sets",
        metavar="ADDRESS",
        nonempty=True,
    )
    anomaly_threshold: float | None = setting(
        None,
        "anomaly score threshold",
        metavar="P",
        ge=0.0,
        le=1.0,
        shown_default="the model's own, from its metadata.json",
    )
    anomaly_alert_rate: float = setting(
        0.05,
        "`streamer train` without anomaly labels: target share of alerts; the cut is that quantile of the "
        "training scores",
        metavar="R",
        flags=("--alert-rate",),
        gt=0.0,
        lt=1.0,
    )
    log_format: str = setting("text", "log lines (`json`: JSON lines with ECS field names)", choices=("text", "json"))
    message_fields: str = setting(
        "message,msg,log,MESSAGE,short_message",
        "JSON fields holding the message, first non-empty string wins (dotted names reach nested ones)",
        metavar="A,B,..",
        check=_message_fields_problem,
    )
    line_format: str = setting(
        "",
        "a Loghub-style text line format, e.g. `<Date> <Time> <Level> <Component>: <Content>` (Date/Time → time, "
        "Level, Host/Node, Component/Service/Program → service, Content → message), tried before the built-in "
        "headers",
        flags=(),
        check=_line_format_problem,
        shown_default="(none)",
    )
    api_host: str = setting(
        "127.0.0.1",
        "address `streamer serve` binds; any other than loopback needs `STREAMER_API_TOKEN`",
        metavar="ADDR",
        flags=("--host",),
    )
    api_port: int = setting(8080, "its port (`0` picks a free one)", metavar="PORT", flags=("--port",), ge=0, le=65535)
    api_token: str = setting(
        "",
        "bearer token every API call and `/metrics` must send; required for a non-loopback `STREAMER_API_HOST`",
        flags=(),  # a flag would show the token in ps
        secret=True,
        shown_default="unset",
    )
    templates: str = setting(
        "off",
        '`on`: mine a template per event and keep template statistics (see "Templates"; costs throughput)',
        flags=(),
        choices=("on", "off"),
    )
    retention: str = setting(
        "",
        "e.g. `30d`, `12h`, `2w`: `run` drops both tables' daily partitions whose day ended longer ago (see "
        '"Storage: daily partitions and retention")',
        flags=(),
        check=_retention_problem,
        shown_default="unset (keep all)",
    )
    kafka_config: dict[str, str] = field(default_factory=dict)  # librdkafka pass-through, see module docstring

    def kafka_client_config(self) -> dict[str, str]:
        """Common librdkafka config for consumers, producers and admin clients."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.kafka_config}

    def message_field_names(self) -> tuple[str, ...]:
        """JSON fields that may hold the message, in order of preference (dotted names reach nested ones)."""
        return tuple(_split(self.message_fields))

    def input_topics(self) -> list[str]:
        """`logs.raw`, `a,b,c` or `^regex` (librdkafka subscribes to a regex when the name starts with ^)."""
        return _topics(self.input_topic)


# --- the declarations, read back --------------------------------------------------------------------------------


@functools.cache
def declared() -> dict[str, Declared]:
    """Setting name -> its declaration, in the order Settings declares them."""
    return {f.name: f.metadata["setting"] for f in fields(Settings) if "setting" in f.metadata}


@functools.cache
def _value_types() -> dict[str, type]:
    """Setting name -> the type a given value is converted to (`int | None` -> int)."""
    hints = typing.get_type_hints(Settings)
    value_types = {}
    for name in declared():
        hint = hints[name]
        if isinstance(hint, types.UnionType):
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        value_types[name] = hint
    return value_types


def _default(name: str) -> object:
    return next(f for f in fields(Settings) if f.name == name).default


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flags_of(name: str) -> tuple[str, ...]:
    flags = declared()[name].flags
    return ("--" + name.replace("_", "-"),) if flags is None else flags


def default_text(name: str) -> str:
    """The default as --help and README show it (a URL's password redacted)."""
    decl = declared()[name]
    if decl.shown_default is not None:
        return decl.shown_default
    value = str(_default(name))
    return redact_url(value) if decl.secret else value


def bounds_text(name: str) -> str:
    """'>= 1', '0..65535', '(0, 1) exclusive', 'text or json'; '' when the declaration sets no bound."""
    d = declared()[name]
    if d.choices:
        return " or ".join(d.choices)
    if d.ge is not None and d.le is not None:
        return f"{_number(d.ge)}..{_number(d.le)}"
    if d.gt is not None and d.lt is not None:
        return f"({_number(d.gt)}, {_number(d.lt)}) exclusive"
    for bound, op in ((d.ge, ">="), (d.gt, ">"), (d.le, "<="), (d.lt, "<")):
        if bound is not None:
            return f"{op} {_number(bound)}"
    return ""


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _meaning(name: str) -> str:
    """The declared help, with its bounds (markdown)."""
    bounds = bounds_text(name)
    return f"{declared()[name].help}; {bounds}" if bounds else declared()[name].help


# --- flags and --help -------------------------------------------------------------------------------------------


def flag_help(name: str) -> str:
    """--help text of a setting's flag: meaning, bounds, variable and default, all from the declaration."""
    decl, var = declared()[name], env_var(name)
    where = f"{var} or {var}_FILE" if decl.secret else var
    text = f"{_meaning(name)} ({where}, default {default_text(name)})"
    if decl.secret:
        text += "; flags show in ps: pass passwords by file"
    return text.replace("`", "").replace("%", "%%")  # argparse %-formats help


def add_settings(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *names: str) -> None:
    """The declared flags of these settings. Values stay text: settings_from_args converts and checks flags and
    environment variables alike."""
    for name in names:
        decl = declared()[name]
        if not flags_of(name):
            raise ValueError(f"{name} is declared without a flag (environment only)")
        parser.add_argument(
            *flags_of(name),
            dest=name,
            metavar=None if decl.choices else (decl.metavar or name.upper()),
            choices=decl.choices or None,
            help=flag_help(name),
        )


def document_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag a command spells by hand for a setting (its dest the setting's name) gets the declared help too,
    so every --help shows the one declared text and default."""
    for action in parser._actions:
        if action.dest in declared():
            action.help = flag_help(action.dest)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                document_setting_flags(sub)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every command that talks to Kafka or PostgreSQL accepts."""
    g = parser.add_argument_group("connections")
    add_settings(g, "bootstrap_servers", "database_url")
    g.add_argument(
        "--kafka-config",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help=KAFKA_PASSTHROUGH_HELP.replace("`", ""),
    )


def add_topic_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings(parser.add_argument_group("topics"), "input_topic", "output_topic", "dlq_topic")


# --- flags + environment -> Settings ----------------------------------------------------------------------------


def settings_from_args(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings: flag, else environment variable, else default. Raises ConfigError on a bad value."""
    env = _read_file_variables(os.environ if env is None else env)
    values: dict[str, typing.Any] = {}
    sources = {}
    for name, typ in _value_types().items():
        raw = getattr(args, name, None) if args is not None else None
        source = flags_of(name)[0] if flags_of(name) else env_var(name)
        if raw is None and env.get(env_var(name), "") != "":
            raw, source = env[env_var(name)], env_var(name)
        if raw is None:
            continue
        try:
            values[name] = typ(raw)
        except (TypeError, ValueError):
            shown = "***" if declared()[name].secret else repr(raw)
            raise ConfigError(f"{source}={shown} is not a valid {typ.__name__}") from None
        sources[name] = source
    values["kafka_config"] = _kafka_passthrough(getattr(args, "kafka_config", None) or [], env)
    settings = Settings(**values)
    for name in declared():
        _check(name, getattr(settings, name), sources.get(name, "the default"))
    return settings


def _check(name: str, value: typing.Any, source: str) -> None:
    """Raises a one-line ConfigError when the value breaks its declaration (a secret's value is not shown)."""
    d, label = declared()[name], name.replace("_", " ")
    shown = "***" if d.secret else repr(value)
    if value is None:  # unset optional: nothing to check
        return
    problem = None
    if d.choices and value not in d.choices:
        problem = f"{label} must be {bounds_text(name)}, got {shown}"
    elif d.nonempty and not value.strip():
        problem = f"{label} is empty"
    elif isinstance(value, int | float) and not _within(value, d):
        problem = f"{label} must be {bounds_text(name)}, got {shown}"
    elif d.check is not None:
        problem = d.check(value)
    if problem:
        raise ConfigError(f"{source}: {problem}")


def _within(x: float, d: Declared) -> bool:
    return (
        (d.ge is None or x >= d.ge)
        and (d.le is None or x <= d.le)
        and (d.gt is None or x > d.gt)
        and (d.lt is None or x < d.lt)
    )


def _read_file_variables(env: Mapping[str, str]) -> dict[str, str]:
    """STREAMER_X_FILE=/path -> STREAMER_X=<the file's text, trailing newline stripped>, for every STREAMER_*
    variable (settings and STREAMER_KAFKA_* passthrough alike). Giving both X and X_FILE is an error."""
    is_file_var = lambda var: var.startswith(ENV_PREFIX) and var.endswith("_FILE")  # noqa: E731
    resolved = {var: value for var, value in env.items() if not is_file_var(var)}
    for var, path in env.items():
        if not is_file_var(var) or path == "":
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


def _kafka_passthrough(pairs: list[str], env: Mapping[str, str]) -> dict[str, str]:
    config: dict[str, str] = {}
    prefix = ENV_PREFIX + "KAFKA_"
    for var, value in env.items():
        if var.startswith(prefix) and value != "":
            config[var[len(prefix) :].lower().replace("_", ".")] = value
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


# --- redaction --------------------------------------------------------------------------------------------------


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_config(config: dict[str, str]) -> dict[str, str]:
    return {k: ("***" if is_secret_key(k) else v) for k, v in config.items()}


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


# --- README's configuration table -------------------------------------------------------------------------------

TABLE_BEGIN = (
    "<!-- settings table: generated from streamer/config.py by `python -m streamer.config --readme README.md` -->"
)
TABLE_END = "<!-- end of settings table -->"


def markdown_table() -> str:
    """README's configuration table, one row per declared setting, then the librdkafka pass-through."""
    rows = ["| Variable | Flag | Default | Meaning |", "|---|---|---|---|"]
    for name, decl in declared().items():
        flags = " ".join(f"`{flag}`" for flag in flags_of(name)) or "—"
        default = default_text(name) if decl.shown_default is not None else f"`{default_text(name)}`"
        meaning = _meaning(name)
        if decl.secret:
            meaning += f"; best as `{env_var(name)}_FILE`"
        rows.append(f"| `{env_var(name)}` | {flags} | {default} | {meaning} |")
    rows.append(f"| `{ENV_PREFIX}KAFKA_<PROPERTY>` | `--kafka-config` | — | {KAFKA_PASSTHROUGH_HELP} |")
    return "\n".join(rows)


def readme_with_table(readme: str) -> str:
    """The README text with the part between the table's markers replaced by markdown_table()."""
    head, begin, rest = readme.partition(TABLE_BEGIN)
    _, end, tail = rest.partition(TABLE_END)
    if not begin or not end:
        raise ConfigError(f"the README has no {TABLE_BEGIN!r} ... {TABLE_END!r} markers")
    return f"{head}{TABLE_BEGIN}\n\n{markdown_table()}\n\n{TABLE_END}{tail}"  # blank lines: a table of its own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer.config", description="README's settings table")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--markdown", action="store_true", help="print the table")
    which.add_argument("--readme", metavar="PATH", help="rewrite the table between its markers in PATH")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table())
        return 0
    with open(args.readme, encoding="utf-8") as f:
        text = f.read()
    with open(args.readme, "w", encoding="utf-8") as f:
        f.write(readme_with_table(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
