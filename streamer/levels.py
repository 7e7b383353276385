"""One level vocabulary for the whole project: DEBUG, INFO, WARN, ERROR, FATAL.

Shippers and systems spell levels many ways (syslog names and numbers, Android's V/D/I/W/E, Apache's
`notice`, OTel severity numbers); normalise() maps them all, and returns None for what it does not know,
so an unknown level never silently becomes a wrong one.
"""

from __future__ import annotations

LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")

_ALIASES: dict[str, str] = {
    # DEBUG
    "trace": "DEBUG",
    "finest": "DEBUG",
    "finer": "DEBUG",
    "fine": "DEBUG",
    "verbose": "DEBUG",
    "debug": "DEBUG",
    "dbg": "DEBUG",
    "v": "DEBUG",
    "d": "DEBUG",
    "t": "DEBUG",
    # INFO
    "info": "INFO",
    "information": "INFO",
    "informational": "INFO",
    "notice": "INFO",
    "i": "INFO",
    "n": "INFO",
    "config": "INFO",
    "ok": "INFO",
    # WARN
    "warn": "WARN",
    "warning": "WARN",
    "w": "WARN",
    # ERROR
    "error": "ERROR",
    "err": "ERROR",
    "e": "ERROR",
    "severe": "ERROR",
    "fail": "ERROR",
    "failure": "ERROR",
    # FATAL
    "fatal": "FATAL",
    "critical": "FATAL",
    "crit": "FATAL",
    "alert": "FATAL",
    "emerg": "FATAL",
    "emergency": "FATAL",
    "panic": "FATAL",
    "f": "FATAL",
    "c": "FATAL",
}

# The aliases as shippers usually write them (info, INFO, Info): looked up before any normalising.
_EXACT: dict[str, str] = {
    spelling: level for alias, level in _ALIASES.items() for spelling in (alias, alias.upper(), alias.capitalize())
}

# syslog severities 0..7 (RFC 5424)
_SYSLOG = {0: "FATAL", 1: "FATAL", 2: "FATAL", 3: "ERROR", 4: "WARN", 5: "INFO", 6: "INFO", 7: "DEBUG"}


def _from_otel_number(n: int) -> str | None:
    # OpenTelemetry SeverityNumber: 1-4 TRACE, 5-8 DEBUG, 9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL
    if 1 <= n <= 8:
        return "DEBUG"
    if 9 <= n <= 12:
        return "INFO"
    if 13 <= n <= 16:
        return "WARN"
    if 17 <= n <= 20:
        return "ERROR"
    if 21 <= n <= 24:
        return "FATAL"
    return None


def normalise(value: object) -> str | None:
    """Map any spelling of a level onto LEVELS; None when empty or unknown.

    Integers 0..7 are syslog severities; 8..24 are OTel severity numbers (syslog wins on the overlap 1..7).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if value in _SYSLOG:
            return _SYSLOG[value]
        return _from_otel_number(value)
    if not isinstance(value, str):
        return None
    exact = _EXACT.get(value)
    if exact is not None:  # the usual spellings, without the string work below (once per event)
        return exact
    key = value.strip().strip("[]<>():").lower()
    if not key:
        return None
    if key in _ALIASES:
        return _ALIASES[key]
    if key.isdigit():
        return normalise(int(key))
    return None
