"""Settings: flags over environment over defaults; bad values stop with one line; secrets stay hidden."""

import argparse

import pytest

from streamer.config import Settings, redact_config, redact_url, settings_from_args
from streamer.errors import ConfigError


def test_defaults():
    s = settings_from_args(None, {})
    assert s == Settings()
    assert s.input_topics() == ["logs.raw"]


def test_environment_and_flags():
    env = {"STREAMER_BATCH_MAX_EVENTS": "10", "STREAMER_INPUT_TOPIC": "a, b", "STREAMER_GROUP_ID": "g-env"}
    args = argparse.Namespace(group_id="g-flag", kafka_config=["security.protocol=SASL_SSL"])
    s = settings_from_args(args, env)
    assert (s.batch_max_events, s.group_id, s.input_topics()) == (10, "g-flag", ["a", "b"])
    assert s.kafka_client_config()["security.protocol"] == "SASL_SSL"


def test_regex_topic_is_one_subscription():
    assert settings_from_args(None, {"STREAMER_INPUT_TOPIC": "^logs\\..*"}).input_topics() == ["^logs\\..*"]


def test_kafka_properties_from_environment_use_dots():
    s = settings_from_args(None, {"STREAMER_KAFKA_SASL_MECHANISM": "PLAIN", "STREAMER_KAFKA_SASL_PASSWORD": "pw"})
    assert s.kafka_config == {"sasl.mechanism": "PLAIN", "sasl.password": "pw"}
    assert redact_config(s.kafka_client_config())["sasl.password"] == "***"


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"STREAMER_BATCH_MAX_EVENTS": "many"}, "STREAMER_BATCH_MAX_EVENTS='many' is not a valid int"),
        ({"STREAMER_BATCH_MAX_EVENTS": "0"}, "batch max events must be >= 1"),
        ({"STREAMER_METRICS_PORT": "70000"}, "metrics port"),
        ({"STREAMER_ANOMALY_THRESHOLD": "1.5"}, "anomaly threshold"),
        ({"STREAMER_DATABASE_URL": "mysql://u:hunter2@h/db"}, "postgresql://"),
        ({"STREAMER_KAFKA_ENABLE_AUTO_COMMIT": "true"}, "enable.auto.commit is set by streamer"),
    ],
)
def test_bad_values_are_one_clear_line_without_secrets(env, fragment):
    with pytest.raises(ConfigError) as err:
        settings_from_args(None, env)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value) and "hunter2" not in str(err.value)


def test_malformed_kafka_pair_hides_secret_value():
    with pytest.raises(ConfigError) as err:
        settings_from_args(argparse.Namespace(kafka_config=["sasl.password"]), {})
    assert "KEY=VALUE" in str(err.value)


def test_redact_url():
    assert (
        redact_url("postgresql://u:s3cret@h:5432/db?password=x&sslmode=require")
        == "postgresql://u:***@h:5432/db?password=***&sslmode=require"
    )
    assert redact_url("postgresql://h/db") == "postgresql://h/db"


def test_text_that_is_not_key_value_never_echoes_what_follows_the_name():
    for pair in ("sasl.password:hunter2", "sasl.password hunter2", "sasl.password=hunter2 extra"):
        with pytest.raises(ConfigError) as err:
            settings_from_args(argparse.Namespace(kafka_config=[pair.replace("=", ":", 1)]), {})
        assert "hunter2" not in str(err.value)
