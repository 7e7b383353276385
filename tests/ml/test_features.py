import numpy as np
import pytest

from streamer.ml.features import LogVectorizer, mask, tokenize_batch


@pytest.mark.parametrize(
    "message,expected",
    [
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
    ],
)
def test_masking(message, expected):
    assert mask(message) == expected


def test_batch_documents_do_not_bleed():
    docs = tokenize_batch(["first 10.0.0.1", "", "second\nline /tmp/x", "third"])
    assert docs == [["first", "xip"], [], ["second", "line", "xpath"], ["third"]]
    assert tokenize_batch([]) == []


def test_transform_matches_per_message_transform():
    msgs = [
        "user alice logged in from 10.0.0.1",
        "disk full on /dev/sda1",
        "",
        "user bob logged out",
        "completely unknown words here",
    ]
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


# --- equivalence with a straightforward reference -------------------------------------------------------------
# The optimised mask regex and the integer bigram lookup in transform() must give exactly what the plain
# one-alternative-per-kind regex and string bigrams give. The reference below is the earlier implementation.

import random
import re

import scipy.sparse as sp

from streamer.ml import features as fmod

_REF_MASK = re.compile(
    r"""
    @(?P<email>[\w-]+(?:\.[\w-]+)+)
  | /(?<![\w/.].)(?P<path>[^\s"'<>,;()\[\]]*[\w/])
  | ~(?<!\w.)(?P<hpath>/[^\s"'<>,;()\[\]]*[\w/])
  | [a-z0-9:](?<!\w.)(?:
        (?<=[hfwsj])(?P<url>(?:(?<=h)ttps?|(?<=f)tps?|(?<=f)ile|(?<=w)ss?|(?<=s)3|(?<=s)ftp|(?<=j)dbc:[a-z0-9]+)://[^\s"'<>]+)
      | (?<=[sch])(?P<status>(?:(?<=s)tatus|(?<=c)ode|(?<=h)ttp/\d(?:\.\d)?"?)[=:]?[ \t]?(?P<sd>[1-5])\d\d\b)
      | (?<=[a-z])(?P<wpath>:\\[^\s"'<>,;()\[\]]*[\w\\])
      | (?<=[0-9a-f])(?P<uuid>[0-9a-f]{7}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b)
      | (?<=[0-9a-f])(?P<mac>[0-9a-f](?::[0-9a-f]{2}){5}\b)
      | (?<=\d)(?P<ip>\d{0,2}(?:\.\d{1,3}){3}(?::\d{1,5})?\b)
      | (?<=[0-9a-f:])(?P<ip6>[0-9a-f]{0,3}:(?:[0-9a-f]{0,4}:){3,6}[0-9a-f]{1,4}\b)
      | (?<=0)(?P<hex0>x[0-9a-f]+\b)
      | (?<=[0-9a-f])(?P<hex>(?:(?<=[a-f])[0-9a-f]*\d|(?<=\d)[0-9a-f]*[a-f])[0-9a-f]*\b(?<=[0-9a-f]{6}))
      | (?<=\d)(?P<dur>\d*(?:\.\d+)?[ \t]?(?:ns|us|µs|ms|msecs?|millis|milliseconds|s|secs?|seconds?|mins?|minutes?)\b)
      | (?<=\d)(?P<pct>\d*(?:\.\d+)?[ \t]?%)
      | (?<=\d)(?P<size>\d*(?:\.\d+)?[ \t]?(?:[kmgt]i?b|bytes)\b)
      | (?<=\d)(?P<num>\d*(?:[.,:]\d+)*\b)
    )
""",
    re.VERBOSE,
)
_REF_TOKEN = re.compile(r"[^\W\d][^\W\d]+|\x01")


def _ref_replace(m):
    kind = m.lastgroup
    if kind in fmod._ALIASES:
        return fmod._ALIASES[kind]
    if kind == "status":
        return " status " + fmod._STATUS_CLASS[m.group("sd")]
    if kind == "dur":
        return fmod._duration_token(m.group(0))
    if kind == "pct":
        value = float(m.group(0).rstrip("% \t"))
        return " xpct_hi " if value >= 90 else (" xpct_mid " if value >= 50 else " xpct_lo ")
    return " x" + kind + " "


def _ref_mask_batch(messages):
    messages = [m.replace("\x01", " ") for m in messages]  # the separator character inside a message is a space
    return _REF_MASK.sub(_ref_replace, fmod._SEP.join(messages).lower())


def _ref_transform(vec, messages):
    """Unigram and bigram strings looked up in the vocabulary dict; same weighting and familiarity rules."""
    n, F = len(messages), len(vec.vocabulary_)
    if n == 0:
        return sp.csr_matrix((0, F)), np.zeros(0, dtype=np.float32)
    uni = _REF_TOKEN.findall(_ref_mask_batch(messages))
    rows, cols, total, known_n = [], [], np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    doc = 0
    for i, w in enumerate(uni):
        if w == "\x01":
            doc += 1
            continue
        j = vec.vocabulary_.get(w, -1)
        if not (j >= 0 and vec.placeholder_[j]):  # placeholders in the vocabulary are not counted
            total[doc] += 1
            known_n[doc] += j >= 0
        if j >= 0:
            rows.append(doc), cols.append(j)
        if i + 1 < len(uni) and uni[i + 1] != "\x01":
            j = vec.vocabulary_.get(w + " " + uni[i + 1], -1)
            total[doc] += 1
            known_n[doc] += j >= 0
            if j >= 0:
                rows.append(doc), cols.append(j)
    counts = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, F)).tocsr()
    counts.sum_duplicates()
    X = counts.astype(np.float64)
    X.data = (np.log(X.data) + 1.0) * vec.idf_[X.indices]
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    X = sp.csr_matrix(sp.diags(1.0 / norms) @ X)
    X.sort_indices()
    return X, (known_n / np.maximum(total, 1)).astype(np.float32)


_EDGE = [
    "",
    " ",
    "\t",
    "xnum xip xpath",
    "5 10.0.0.1 /var/log",
    "١٢٣ ٣ms ²² ½ İstanbul ǅemal straße café",
    "a\tb\t5\tms",
    "status=503",
    "status 200",
    "code: 404",
    "HTTP/1.1 302",
    '"GET / HTTP/1.0" 200 5',
    "http/2 503",
    "took 5ms",
    "took 12 ms",
    "took 1.5 s",
    "waited 61 seconds",
    "3 min",
    "2 mins",
    "950 us",
    "7µs",
    "4 msecs",
    "disk 97%",
    "cpu 50.5 %",
    "mem 3%",
    "100%cpu",
    "5%5",
    "size 12 kb",
    "512 MiB",
    "1 bytes",
    "10gb",
    "see https://example.org/a?b=1 now",
    "ftp://h/x",
    "s3://bucket/key",
    "jdbc:postgresql://db:5432/x",
    "wss://h",
    "file:///etc/passwd",
    "C:\\Windows\\System32\\x.dll",
    "d:\\data\\",
    "bob@example.com",
    "a@b.c-@d.e",
    "~/x/y",
    "/a/b/",
    "./rel",
    "a/b",
    "x//y",
    "0xdeadbeef",
    "0x",
    "deadbeef12",
    "abcdef1",
    "1abcdef",
    "a١bcdef0 end",
    "38101a0b-2096-447d-96ea-a692162415ae",
    "e4b06ce6-0741-47a8-ace4-2c8218072e8c",
    "12345678-1234-1234-1234-123456789012",
    "00:11:22:33:44:55",
    "aa:bb:cc:dd:ee:ff",
    "ab:cd::1:2",
    "fe80::1:2:3:4",
    "::1:2:3:4",
    "1.2.3.4:80",
    "1.2.3.4:123456",
    "1.2.3",
    "1,000,000",
    "12:34:56",
    "2024-03-01T00:00:00.051Z",
    "j12 k8s",
    "user_name id_12",
    "é" * 10 + " 5",
    "x " * 3000 + "5 ms " * 500,
]


def _fuzz(n, seed):
    rng = random.Random(seed)
    frags = (
        [e for e in _EDGE if len(e) < 60]
        + list("0123456789abcdefxyz :./\\@~-%\t\"'=,;()[]<>\n")
        + ["status", "code", "http/1.1", "ms", "s", "sec", "min", "kb", "bytes", "%", "0x", "https://", "µs", "١"]
    )
    return ["".join(rng.choice(frags) for _ in range(rng.randint(0, 12))) for _ in range(n)]


def _cases():
    from streamer.ml.corpus import generate

    corpus = [e["message"] for e in generate(1500, seed=7)]
    return [
        [],
        [""],
        ["", ""],
        ["xnum xip"],
        _EDGE,
        corpus,
        _fuzz(3000, seed=1),
        ["5 ms", "ends with \x01"],
        ["a\x01b", "5\x01ms"],
        ["\x01", "x\x01\x01y", "z"],
    ]


def test_mask_batch_matches_reference():
    for batch in _cases():
        assert fmod.mask_batch(batch) == _ref_mask_batch(batch)
    for message in _fuzz(3000, seed=2):
        assert fmod.mask_batch([message]) == _ref_mask_batch([message]), message


def test_transform_matches_reference():
    from streamer.ml.corpus import generate

    train = [e["message"] for e in generate(3000, seed=5)] + _EDGE + _fuzz(2000, seed=3)
    for vec in (
        LogVectorizer(min_df=1).fit(train),
        LogVectorizer(min_df=2, max_features=500).fit(train),
        LogVectorizer().fit(["unrelated words only"] * 3),
    ):
        for batch in _cases():
            got = vec.transform(batch)
            X, fam = _ref_transform(vec, batch)
            assert got.X.shape == X.shape
            np.testing.assert_array_equal(got.X.indptr, X.indptr)
            np.testing.assert_array_equal(got.X.indices, X.indices)
            np.testing.assert_allclose(got.X.data, X.data, rtol=0, atol=1e-12)
            np.testing.assert_array_equal(got.familiarity, fam)
            assert got.familiarity.dtype == np.float32


def test_lookup_cache_is_not_pickled_and_follows_refits():
    import pickle

    vec = LogVectorizer(min_df=1).fit(["alpha beta gamma", "beta gamma delta"])
    before = pickle.dumps(vec)
    vec.transform(["alpha beta"])
    assert "_lookup" in vec.__dict__ and pickle.dumps(vec) == before
    vec.fit(["epsilon zeta", "epsilon zeta"])
    assert vec.transform(["epsilon zeta"]).familiarity[0] == 1.0
    assert pickle.loads(pickle.dumps(vec)).transform(["epsilon zeta"]).X.nnz == 3


def test_the_separator_character_inside_a_message_is_white_space():
    # It used to split the message into two documents, and transform() failed for the whole batch.
    vec = LogVectorizer(min_df=1).fit(["disk full\x01on sda", "disk ok"])
    got, want = vec.transform(["disk\x01full on sda", "x"]), vec.transform(["disk full on sda", "x"])
    assert (got.X != want.X).nnz == 0 and list(got.familiarity) == list(want.familiarity)
