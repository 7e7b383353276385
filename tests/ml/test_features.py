import numpy as np
import pytest

from streamer.ml.features import LogVectorizer, mask, tokenize_batch


@pytest.mark.parametrize("message,expected", [
    ("Connection from 10.1.2.3:5555 closed", "connection from xip closed"),
    ("req 38101a0b-2096-447d-96ea-a692162415ae done", "req xuuid done"),
    ("read /var/lib/data/file.db failed", "read xpath failed"),
    ("pointer 0x7fed806eb5d at deadbeef12", "pointer xhex at xhex"),
    ('"GET /api/x HTTP/1.1" 503 12', "get xpath status xs_server xnum"),
    ("status=404", "status xs_client"),
    ("query took 5234ms", "query took xdur_s"),
    ("took 12 ms", "took xdur_fast"),
    ("disk at 97%", "disk at xpct_hi"),
    ("see https://example.org/a?b=1 now", "see xurl now"),
    ("mail bob@example.com", "mail bob xemail"),
    ("Core: C:\\Windows\\winsxs\\x.dll", "core xpath"),
    ("retry 3 of 5", "retry xnum of xnum"),
])
def test_masking(message, expected):
    assert mask(message) == expected


def test_batch_documents_do_not_bleed():
    docs = tokenize_batch(["first 10.0.0.1", "", "second\nline /tmp/x", "third"])
    assert docs == [["first", "xip"], [], ["second", "line", "xpath"], ["third"]]
    assert tokenize_batch([]) == []


def test_transform_matches_per_message_transform():
    msgs = ["user alice logged in from 10.0.0.1", "disk full on /dev/sda1", "", "user bob logged out",
            "completely unknown words here"]
    vec = LogVectorizer(min_df=1).fit(msgs[:4] * 2)
    batch = vec.transform(msgs)
    for i, m in enumerate(msgs):
        one = vec.transform([m])
        np.testing.assert_allclose(batch.X[i].toarray(), one.X.toarray())
        assert batch.familiarity[i] == one.familiarity[0]
    norms = np.sqrt(np.asarray(batch.X.multiply(batch.X).sum(axis=1))).ravel()
    np.testing.assert_allclose(norms[[0, 1, 3]], 1.0)
    assert batch.familiarity[4] == 0.0 and batch.familiarity[0] == 1.0


def test_vocabulary_is_bounded_and_deterministic():
    msgs = [f"event {w} happened" for w in ("alpha", "beta", "gamma", "delta")] * 3
    a = LogVectorizer(min_df=2, max_features=5).fit(msgs)
    b = LogVectorizer(min_df=2, max_features=5).fit(list(msgs))
    assert a.vocabulary_ == b.vocabulary_ and len(a.vocabulary_) == 5
