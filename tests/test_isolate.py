import pytest

from streamer.isolate import failing_alone


def attempt_failing_on(bad, calls):
    def attempt(indexes):
        calls.append(list(indexes))
        hit = [i for i in indexes if i in bad]
        if hit:
            raise ValueError(f"bad {hit[0]}")

    return attempt


def test_only_the_records_that_fail_alone_are_returned_with_their_own_error():
    calls = []
    failing = failing_alone(list(range(100)), ValueError("batch"), attempt_failing_on({3, 77}, calls))
    assert {i: str(e) for i, e in failing.items()} == {3: "bad 3", 77: "bad 77"}
    assert len(calls) <= 2 * 2 * 7  # about 2k·log2(n) attempts, never one per record


def test_a_single_record_keeps_the_error_it_failed_with():
    error = ValueError("only one")
    assert failing_alone([5], error, attempt_failing_on(set(), [])) == {5: error}


def test_errors_that_are_not_caught_propagate():
    def attempt(indexes):
        raise ConnectionError("database gone")

    with pytest.raises(ConnectionError):
        failing_alone([0, 1, 2], ValueError("batch"), attempt, catch=ValueError)


def test_a_failure_only_in_combination_isolates_nothing():
    def attempt(indexes):
        if {0, 3} <= set(indexes):
            raise ValueError("together")

    assert failing_alone([0, 1, 2, 3], ValueError("together"), attempt) == {}
