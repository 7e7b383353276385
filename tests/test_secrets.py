"""Secrets by environment or file (issue 11 item 7): STREAMER_<NAME>_FILE holds the value of STREAMER_<NAME>,
so a password is in neither `ps` (/proc/PID/cmdline) nor the process environment, nor any log line or metric."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streamer.config import settings_from_args
from streamer.errors import ConfigError
from testkit.clients import consume_all, free_port, produce, query, scrape, wait_for
from testkit.pipeline import ROOT, StreamerProcess, mixed_values
from tests.test_security import assert_not_leaked, canary, sasl_env


def test_a_file_variable_gives_the_kafka_password_without_its_trailing_newline(tmp_path):
    secret = tmp_path / "sasl-password"
    secret.write_text("s3cret\n")
    settings = settings_from_args(env={"STREAMER_KAFKA_SASL_PASSWORD_FILE": str(secret)})
    assert settings.kafka_config == {"sasl.password": "s3cret"}


def test_every_setting_may_come_from_a_file(tmp_path):
    url = tmp_path / "database-url"
    url.write_text("postgresql://streamer:pw@db.example:5432/streamer\r\n")
    port = tmp_path / "port"
    port.write_text("9200\n")
    settings = settings_from_args(env={"STREAMER_DATABASE_URL_FILE": str(url), "STREAMER_METRICS_PORT_FILE": str(port)})
    assert settings.database_url == "postgresql://streamer:pw@db.example:5432/streamer"
    assert settings.metrics_port == 9200


def test_only_the_trailing_newline_is_stripped(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("  two words \n\n")
    assert settings_from_args(env={"STREAMER_KAFKA_SASL_PASSWORD_FILE": str(secret)}).kafka_config == {
        "sasl.password": "  two words "
    }


def test_an_unreadable_file_is_a_clear_error_naming_the_variable(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"STREAMER_KAFKA_SASL_PASSWORD_FILE: cannot read .*nope.*No such file"):
        settings_from_args(env={"STREAMER_KAFKA_SASL_PASSWORD_FILE": str(missing)})


def test_value_and_file_together_are_refused(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("a")
    with pytest.raises(ConfigError, match="both STREAMER_DATABASE_URL and STREAMER_DATABASE_URL_FILE"):
        settings_from_args(
            env={"STREAMER_DATABASE_URL": "postgresql://x@y/z", "STREAMER_DATABASE_URL_FILE": str(secret)}
        )


def test_help_prints_no_secret_from_the_environment(tmp_path):
    secret = canary()
    path = tmp_path / "pw"
    path.write_text(secret)
    env = {"PATH": "/usr/bin:/bin", "STREAMER_KAFKA_SASL_PASSWORD": secret, "STREAMER_DATABASE_URL_FILE": str(path)}
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run", "--help"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "STREAMER_METRICS_HOST" in done.stdout
    assert secret not in done.stdout + done.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_a_sasl_password_from_a_file_authenticates_and_stays_out_of_ps(
    kafka_sasl_config, streamer_env, topics, migrated_db_url, tmp_path
):
    sasl = kafka_sasl_config
    password = sasl["sasl.password"]
    password_file = tmp_path / "sasl-password"
    password_file.write_text(password + "\n")  # as `echo pw > file` and Docker/Kubernetes secrets write it
    url_file = tmp_path / "database-url"
    url_file.write_text(migrated_db_url + "\n")
    env = sasl_env(streamer_env, sasl, password, free_port())
    del env["STREAMER_KAFKA_SASL_PASSWORD"], env["STREAMER_DATABASE_URL"]
    env["STREAMER_KAFKA_SASL_PASSWORD_FILE"] = str(password_file)
    env["STREAMER_DATABASE_URL_FILE"] = str(url_file)
    port = int(env["STREAMER_METRICS_PORT"])

    client = {k: v for k, v in sasl.items() if k != "bootstrap.servers"}
    values, invalid = mixed_values(100)
    produce(sasl["bootstrap.servers"], topics.raw, values, config=client)
    proc = StreamerProcess(env, tmp_path / "sasl-file.log")
    try:
        valid = len(values) - len(invalid)
        wait_for(
            lambda: query(migrated_db_url, "SELECT count(*) FROM log_entries")[0][0] == valid,
            timeout=90,
            what=f"{valid} events stored by streamer run over SASL with the password from a file",
        )
        assert len(consume_all(sasl["bootstrap.servers"], topics.scored, expected=valid, config=client)) == valid
        pid = proc.proc.pid
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        environ = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
        assert password not in cmdline
        assert password not in environ and str(password_file) in environ
        endpoints = {path: scrape(port, path)[1] for path in ("/metrics", "/readyz", "/healthz")}
        assert proc.terminate() == 0, proc.output()[-3000:]
        output = proc.output()
    finally:
        proc.close()
    assert_not_leaked(password, output, endpoints)
    assert os.path.exists(password_file)  # read, never consumed or rewritten
