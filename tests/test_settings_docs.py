"""Each setting is declared once (streamer/config.py); flags, --help, bounds checks and README's table follow it."""

from __future__ import annotations

import argparse
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from streamer.cli import build_parser
from streamer.config import (
    Settings,
    declared,
    default_text,
    env_var,
    flag_help,
    flags_of,
    markdown_table,
    readme_with_table,
    settings_from_args,
)
from streamer.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

# A valid value other than the default, for settings whose text is checked.
VALID = {
    "database_url": ("postgresql://a@b/c", "postgresql://d@e/f"),
    "line_format": ("<Level> <Content>", "<Date> <Content>"),
    "retention": ("30d", "2w"),
    "anomaly_threshold": ("0.5", "0.25"),
    "anomaly_alert_rate": ("0.5", "0.25"),
}


def _parsers(parser: argparse.ArgumentParser):
    """The parser and every subcommand parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _squeezed(text: str) -> str:
    return "".join(text.split())  # argparse re-wraps help text


def test_readme_table_is_the_one_made_from_the_declarations():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme) == readme, "regenerate: .venv/bin/python -m streamer.config --readme README.md"


def test_every_declared_setting_has_a_row_with_its_default():
    table = markdown_table()
    for name in declared():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{env_var(name)}` |"))
        assert default_text(name) in row


def test_every_setting_flag_in_every_command_shows_the_declared_help_and_default():
    seen = set()
    for parser in _parsers(build_parser()):
        shown = _squeezed(parser.format_help())
        for action in parser._actions:
            if action.dest in declared():
                seen.add(action.dest)
                assert action.help == flag_help(action.dest)
                assert _squeezed(f"{env_var(action.dest)}") in shown
                assert _squeezed(f"default {default_text(action.dest)}") in shown
    flagged = {name for name in declared() if flags_of(name)}
    assert seen == flagged, "a declared flag no command offers, or a command's flag without a declaration"


def test_run_help_shows_declared_defaults_and_no_secret():
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run", "--help"],
        env={"PATH": "/usr/bin:/bin", "STREAMER_DATABASE_URL": "postgresql://u:hunter2@h/db"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    shown = _squeezed(done.stdout)
    assert _squeezed("(STREAMER_BATCH_MAX_EVENTS, default 5000)") in shown
    assert _squeezed("default postgresql://streamer:***@127.0.0.1:5432/streamer") in shown
    assert "hunter2" not in done.stdout


def _bounded():
    for name, d in declared().items():
        for bound, outside in ((d.ge, -1), (d.gt, -1), (d.le, +1), (d.lt, +1)):
            if bound is not None:
                yield pytest.param(name, bound, outside, id=f"{name}-{bound}")


@pytest.mark.parametrize("name, bound, outside", list(_bounded()))
def test_declared_bounds_are_checked(name, bound, outside):
    d = declared()[name]
    hint = typing.get_type_hints(Settings)[name]
    typ = float if float in (hint, *typing.get_args(hint)) else int
    step = 1 if typ is int else 0.001
    inclusive = bound in (d.ge, d.le)
    bad = typ(bound + outside * step) if inclusive else typ(bound)
    with pytest.raises(ConfigError) as err:
        settings_from_args(None, {env_var(name): str(bad)})
    assert str(err.value).startswith(f"{env_var(name)}: {name.replace('_', ' ')} must be")
    assert "\n" not in str(err.value)
    good = typ(bound) if inclusive else typ(bound - outside * step)
    assert getattr(settings_from_args(None, {env_var(name): str(good)}), name) == good


@pytest.mark.parametrize("name", [name for name, d in declared().items() if d.choices])
def test_declared_choices_are_checked(name):
    with pytest.raises(ConfigError, match=f"^{env_var(name)}: .* must be {' or '.join(declared()[name].choices)}"):
        settings_from_args(None, {env_var(name): "neither"})


@pytest.mark.parametrize("name", [name for name in declared() if flags_of(name)])
def test_a_flag_wins_over_its_variable(name):
    d = declared()[name]
    if d.choices:
        from_env, from_flag = d.choices[0], d.choices[-1]
    elif name in VALID:
        from_env, from_flag = VALID[name]
    elif isinstance(getattr(Settings(), name) or 0, int | float):
        from_env, from_flag = "7", "9"
    else:
        from_env, from_flag = "from-env", "from-flag"
    assert str(getattr(settings_from_args(None, {env_var(name): from_env}), name)) == from_env
    flagged = settings_from_args(argparse.Namespace(**{name: from_flag}), {env_var(name): from_env})
    assert str(getattr(flagged, name)) == from_flag


def test_secrets_stay_out_of_the_settings_repr():
    settings = settings_from_args(
        None, {"STREAMER_API_TOKEN": "tok-hunter2", "STREAMER_DATABASE_URL": "postgresql://u:hunter2@h/db"}
    )
    assert settings.api_token == "tok-hunter2"
    assert "hunter2" not in repr(settings)


def test_a_secret_given_as_a_flag_is_not_echoed_when_it_is_malformed():
    with pytest.raises(ConfigError) as err:
        settings_from_args(argparse.Namespace(database_url="mysql://u:hunter2@h/db"), {})
    assert str(err.value).startswith("--database-url: database URL must start with postgresql://")
    assert "hunter2" not in str(err.value)
