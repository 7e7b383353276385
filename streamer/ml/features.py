"""The one shared vectorizer: mask variable parts of log messages, tokenise, weight with TF-IDF.

Everything here works on a whole batch at once: the messages are joined into one string, lower-cased, masked
with ONE compiled regex pass and tokenised with ONE findall; unigrams and bigrams are looked up in the
vocabulary with a C-level map, and the sparse matrix is assembled with numpy. Per-message Python work is a
list slice at most, which is what makes batch scoring fast.

Masking replaces ids, IPs, numbers, paths, URLs... with typed placeholder words (xip, xnum, xpath...) so the
models learn templates rather than values. A few values carry meaning and are bucketed instead of erased:
HTTP status classes (xs5xx), durations by order of magnitude (xdur_ms, xdur_10s...) and percentages
(xpct_hi for >= 90 %).

transform() also returns each message's *familiarity*: the share of its words (other than placeholders)
and word pairs that the vocabulary knows; 0 when it has none. The scorer uses it to lower the confidence of predictions on unfamiliar text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import scipy.sparse as sp

# Separates messages inside the joined batch. No mask pattern matches it or whitespace around it,
# and the tokenizer emits it as its own token, so documents never bleed into each other.
_SEP = "\n\x01\n"
_SEP_TOKEN = "\x01"

_DUR_UNITS = {
    "ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "msec": 1.0, "msecs": 1.0, "millis": 1.0,
    "milliseconds": 1.0, "s": 1e3, "sec": 1e3, "secs": 1e3, "second": 1e3, "seconds": 1e3,
    "min": 6e4, "mins": 6e4, "minute": 6e4, "minutes": 6e4,
}

# One alternation; the replacement is chosen by the group that matched (m.lastgroup). For speed, every
# top-level alternative starts with a literal or a character class (the regex engine then skips it with one
# comparison) and word-start-only patterns share one "first character + not preceded by a word" test.
_MASK = re.compile(
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
_ALIASES = {"hpath": " xpath ", "wpath": " xpath ", "ip6": " xip ", "hex0": " xhex "}
_STATUS_CLASS = {"1": " xs_info ", "2": " xs_ok ", "3": " xs_redirect ", "4": " xs_client ", "5": " xs_server "}
_DUR_SPLIT = re.compile(r"(\d+(?:\.\d+)?)[ \t]?(\D+)")

# Placeholder words the masks produce; they say a value was there, not what the message is about, so they
# don't count as known words when measuring familiarity.
PLACEHOLDERS = frozenset({
    "xurl", "xemail", "xuuid", "xmac", "xip", "xhex", "xpath", "xdur", "xdur_fast", "xdur_ms", "xdur_s",
    "xdur_10s", "xdur_min", "xpct_hi", "xpct_mid", "xpct_lo", "xsize", "xnum", "xs_info", "xs_ok",
    "xs_redirect", "xs_client", "xs_server",
})

# Words of two or more letters/underscores, or the document separator. Digits split words (j12 -> j).
_TOKEN = re.compile(r"[^\W\d][^\W\d]+|\x01")


def _duration_token(text: str) -> str:
    m = _DUR_SPLIT.match(text)
    if m is None:
        return " xdur "
    ms = float(m.group(1)) * _DUR_UNITS.get(m.group(2), 1.0)
    if ms < 100:
        return " xdur_fast "
    if ms < 1000:
        return " xdur_ms "
    if ms < 10000:
        return " xdur_s "
    if ms < 60000:
        return " xdur_10s "
    return " xdur_min "


def _replace(m: re.Match) -> str:
    kind = m.lastgroup
    if kind in _ALIASES:
        return _ALIASES[kind]
    if kind == "status":
        # keep the word, bucket the code: "status=503" -> "status xs_server"
        return " status " + _STATUS_CLASS[m.group("sd")]
    if kind == "dur":
        return _duration_token(m.group(0))
    if kind == "pct":
        value = float(m.group(0).rstrip("% \t"))
        return " xpct_hi " if value >= 90 else (" xpct_mid " if value >= 50 else " xpct_lo ")
    return " x" + kind + " "


def mask_batch(messages) -> str:
    """Lower-case and mask a batch; returns the joined, masked text (documents separated by _SEP)."""
    text = _SEP.join(messages).lower()
    return _MASK.sub(_replace, text)


def mask(message: str) -> str:
    """The masked form of one message (for templates, tests and explanations)."""
    return " ".join(_TOKEN.findall(mask_batch([message])))


def tokenize_batch(messages) -> list[list[str]]:
    """Unigram token lists per message, after masking."""
    tokens = _TOKEN.findall(mask_batch(messages))
    out: list[list[str]] = [[]]
    for t in tokens:
        if t == _SEP_TOKEN:
            out.append([])
        else:
            out[-1].append(t)
    return out if messages else []


@dataclass
class Features:
    """What the one transform produces: the TF-IDF matrix and each row's familiarity (0..1)."""

    X: sp.csr_matrix
    familiarity: np.ndarray


def _stream(messages):
    """Token stream of a batch: unigrams then bigrams, as one flat list with document boundaries.

    Returns (tokens, doc_of_token, n_unigrams_per_doc).
    """
    uni = _TOKEN.findall(mask_batch(messages))
    n_docs = len(messages)
    uni_arr = np.array(uni, dtype=object)
    is_sep = uni_arr == _SEP_TOKEN if uni else np.zeros(0, dtype=bool)
    # document index of every unigram (separators belong to the next document, then are dropped)
    doc_of = np.cumsum(is_sep)
    # bigrams over the flat stream; those touching a separator are dropped with it
    if len(uni) > 1:
        pair_ok = ~(is_sep[:-1] | is_sep[1:])
        bi = [a + " " + b for a, b in zip(uni, uni[1:])]
        bi_arr = np.array(bi, dtype=object)[pair_ok]
        bi_doc = doc_of[:-1][pair_ok]
    else:
        bi_arr = np.zeros(0, dtype=object)
        bi_doc = np.zeros(0, dtype=np.int64)
    keep = ~is_sep
    uni_arr, uni_doc = uni_arr[keep], doc_of[keep]
    n_uni = np.bincount(uni_doc, minlength=n_docs)[:n_docs] if n_docs else np.zeros(0, dtype=np.int64)
    tokens = np.concatenate([uni_arr, bi_arr]) if len(bi_arr) else uni_arr
    docs = np.concatenate([uni_doc, bi_doc]) if len(bi_arr) else uni_doc
    return tokens, docs.astype(np.int64), n_uni, len(uni_arr)


class LogVectorizer:
    """Masked word unigrams + bigrams, sublinear TF-IDF, L2-normalised rows; the vocabulary is bounded."""

    def __init__(self, min_df: int = 2, max_features: int = 60000):
        self.min_df = min_df
        self.max_features = max_features
        self.vocabulary_: dict[str, int] = {}
        self.idf_: np.ndarray = np.zeros(0)
        self.placeholder_: np.ndarray = np.zeros(0, dtype=bool)

    @property
    def n_features(self) -> int:
        return len(self.vocabulary_)

    def fit(self, messages) -> "LogVectorizer":
        messages = list(messages)
        tokens, docs, _, _ = _stream(messages)
        # document frequency of every distinct token
        codes, inverse = np.unique(tokens.astype(str), return_inverse=True)
        pairs = np.unique(inverse.astype(np.int64) * max(len(messages), 1) + docs)
        df = np.bincount(pairs // max(len(messages), 1), minlength=len(codes))
        ok = np.flatnonzero(df >= self.min_df)
        # most frequent first; ties broken by the token text so the result is deterministic
        order = sorted(ok.tolist(), key=lambda i: (-int(df[i]), str(codes[i])))[: self.max_features]
        chosen = sorted(str(codes[i]) for i in order)
        self.vocabulary_ = {t: j for j, t in enumerate(chosen)}
        df_chosen = np.array([df[np.searchsorted(codes, t)] for t in chosen], dtype=np.float64)
        n = len(messages)
        self.idf_ = np.log((1.0 + n) / (1.0 + df_chosen)) + 1.0
        self.placeholder_ = np.array([t in PLACEHOLDERS for t in chosen], dtype=bool)
        return self

    def transform(self, messages) -> Features:
        messages = messages if isinstance(messages, list) else list(messages)
        n = len(messages)
        F = len(self.vocabulary_)
        if n == 0:
            return Features(sp.csr_matrix((0, F), dtype=np.float64), np.zeros(0, dtype=np.float32))
        tokens, docs, _, n_uni_total = _stream(messages)
        ids = np.fromiter(map(self.vocabulary_.get, tokens, repeat(-1)), dtype=np.int64, count=len(tokens))
        known = ids >= 0
        # familiarity: the share of the message's words and word pairs the vocabulary knows; placeholders
        # alone are neither known nor unknown words (pairs with them count: "took xdur_s" is a pattern)
        uni_ids = ids[:n_uni_total]
        placeholder = np.zeros(len(uni_ids), dtype=bool)
        placeholder[uni_ids >= 0] = self.placeholder_[uni_ids[uni_ids >= 0]]
        counted = np.ones(len(ids), dtype=bool)
        counted[:n_uni_total] = ~placeholder
        total = np.bincount(docs[counted], minlength=n)
        known_n = np.bincount(docs[counted & known], minlength=n)
        familiarity = (known_n / np.maximum(total, 1)).astype(np.float32)
        # counts per (row, column): unique keys come out sorted by row, then column = CSR order
        keys, counts = np.unique(docs[known] * F + ids[known], return_counts=True)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // F, minlength=n), out=indptr[1:])
        X = sp.csr_matrix((counts.astype(np.float64), (keys % F).astype(np.int32), indptr), shape=(n, F))
        # sublinear tf, idf, L2 norm
        np.log(X.data, out=X.data)
        X.data += 1.0
        X.data *= self.idf_[X.indices]
        row_nnz = np.diff(X.indptr)
        norms = np.sqrt(np.bincount(np.repeat(np.arange(n), row_nnz), weights=X.data ** 2, minlength=n))
        norms[norms == 0] = 1.0
        X.data /= np.repeat(norms, row_nnz)
        return Features(X, familiarity)

    def fit_transform(self, messages) -> Features:
        messages = list(messages)
        return self.fit(messages).transform(messages)
