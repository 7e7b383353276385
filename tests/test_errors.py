"""streamer.errors.one_line: how every error becomes one loggable line."""

from streamer.errors import Dependency, TransientError, one_line


def test_one_line_keeps_the_first_non_empty_line_within_the_limit():
    err = RuntimeError("\n  connection refused  \nDETAIL: the second line\n")
    assert one_line(err) == "connection refused"
    assert one_line(err, with_type=True) == "RuntimeError: connection refused"
    assert one_line(ValueError("x" * 900)) == "x" * 500
    assert one_line(ValueError("abcdef"), limit=3) == "abc"


def test_an_error_without_a_message_is_named_by_its_type():
    assert one_line(KeyError()) == "KeyError"
    assert one_line(TimeoutError(""), with_type=True) == "TimeoutError"


def test_a_transient_error_names_its_dependency_as_a_metric_label():
    err = TransientError("PostgreSQL write failed: connection refused", Dependency.DATABASE)
    assert err.dependency is Dependency.DATABASE
    assert f"{err.dependency}" == "database"  # the metric label, whatever the message says
    assert TransientError("broker down").dependency is Dependency.KAFKA
