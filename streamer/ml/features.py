"""The one shared vectorizer: mask variable parts of log messages, tokenise, weight with TF-IDF.

Everything here works on a whole batch at once: the messages are joined into one string, lower-cased, masked
with ONE compiled regex pass and tokenised with ONE findall; transform() looks the words up with a C-level map
to integer ids, finds bigram columns from pairs of ids with numpy (no bigram strings are built), and assembles
the sparse matrix with numpy. Per-message Python work is a list slice at most, which is what makes batch
scoring fast.

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
from itertools import pairwise, repeat

import numpy as np
import scipy.sparse as sp

# Separates messages inside the joined batch. No mask pattern matches it or whitespace around it,
# and the tokenizer emits it as its own token, so documents never bleed into each other.
_SEP = "\n\x01\n"
_SEP_TOKEN = "\x01"

_DUR_UNITS = {
    "ns": 1e-6,
    "us": 1e-3,
    "µs": 1e-3,
    "ms": 1.0,
    "msec": 1.0,
    "msecs": 1.0,
    "millis": 1.0,
    "milliseconds": 1.0,
    "s": 1e3,
    "sec": 1e3,
    "secs": 1e3,
    "second": 1e3,
    "seconds": 1e3,
    "min": 6e4,
    "mins": 6e4,
    "minute": 6e4,
    "minutes": 6e4,
}

# One regex pass. Its first item is one character class, so the engine jumps between candidate characters in C;
# the rest of a start is decided by a lookbehind on that character (digit, g-z, a-f, '@', '/', '~', ':'), and
# inside a branch every alternative opens with a literal or a class of the NEXT character where possible, which
# the engine rejects without entering the alternative. At a given start the alternatives that can match are
# tried in the same order as in the plain one-alternative-per-kind form (factored only where they cannot both
# match), so the masked text is the same. Each alternative ends with an empty group named
# <kind> or <kind>_<variant>; the replacement is chosen by m.lastindex.
_MASK = re.compile(
    r"""
    [@/~0-9a-z:](?<!\w[~0-9a-z:])       # '@' and '/' anywhere ('/' checked below); the rest at a word start
    (?:
        (?<=[g-z])(?:
            t(?:(?<=ht)tp(?:s?://[^\s"'<>]+(?P<url>)
                          | /\d(?:\.\d)?"?[=:]?[ \t]?[1-5]\d\d\b(?P<status>))
               | (?<=st)atus[=:]?[ \t]?[1-5]\d\d\b(?P<status_s>))
          | s(?<=ws)s?://[^\s"'<>]+(?P<url_ws>)
          | 3(?<=s3)://[^\s"'<>]+(?P<url_s3>)
          | f(?<=sf)tp://[^\s"'<>]+(?P<url_sftp>)
          | d(?<=jd)bc:[a-z0-9]+://[^\s"'<>]+(?P<url_jdbc>)
          | :\\[^\s"'<>,;()\[\]]*[\w\\](?P<wpath>))
      | (?<=[0-9])(?:
            # the common plain number, when what follows rules out every longer or other reading below
            [0-9]*+(?=[\n")\]/;=]|[ ][^nusµm%kgtb]|-(?<![0-9]{8}-))(?P<num_plain>)
          | [0-9a-f]{7}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b(?P<uuid>)
          | [0-9a-f](?::[0-9a-f]{2}){5}\b(?P<mac>)
          | \d{0,2}(?:\.\d{1,3}){3}(?::\d{1,5})?\b(?P<ip>)
          | [0-9a-f]{0,3}:(?:[0-9a-f]{0,4}:){3,6}[0-9a-f]{1,4}\b(?P<ip6>)
          | x(?<=0x)[0-9a-f]+\b(?P<hex0>)
          | [0-9]*+[a-f][0-9a-f]*+\b(?<=[0-9a-f]{6})(?P<hex>)
            # duration, percentage and size share the number; only its longest form can precede a unit
          | \d*+(?:\.\d+)?+[ \t]?+(?:
                (?:ns|us|µs|ms|msecs?|millis|milliseconds|s|secs?|seconds?|mins?|minutes?)\b(?P<dur>)
              | %(?P<pct>)
              | (?:[kmgt]i?b|bytes)\b(?P<size>))
          | \d*(?:[.,:]\d+)*\b(?P<num>))
      | (?<=[a-f])(?:
            t(?<=ft)ps?://[^\s"'<>]+(?P<url_ftp>)
          | i(?<=fi)le://[^\s"'<>]+(?P<url_file>)
          | o(?<=co)de[=:]?[ \t]?[1-5]\d\d\b(?P<status_code>)
          | :\\[^\s"'<>,;()\[\]]*[\w\\](?P<wpath_af>)
          | [0-9a-f]{7}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b(?P<uuid_af>)
          | [0-9a-f](?::[0-9a-f]{2}){5}\b(?P<mac_af>)
          | [0-9a-f]{0,3}:(?:[0-9a-f]{0,4}:){3,6}[0-9a-f]{1,4}\b(?P<ip6_af>)
          | [0-9a-f]*\d[0-9a-f]*\b(?<=[0-9a-f]{6})(?P<hex_af>))
      | (?<=@)[\w-]+(?:\.[\w-]+)+(?P<email>)
      | (?<=/)(?<![\w/.]/)[^\s"'<>,;()\[\]]*[\w/](?P<path>)
      | (?<=~)/[^\s"'<>,;()\[\]]*[\w/](?P<hpath>)
      | (?<=:)[0-9a-f]{0,3}:(?:[0-9a-f]{0,4}:){3,6}[0-9a-f]{1,4}\b(?P<ip6_colon>)
    )
""",
    re.VERBOSE,
)
_ALIASES = {"hpath": " xpath ", "wpath": " xpath ", "ip6": " xip ", "hex0": " xhex "}
_STATUS_CLASS = {"1": " xs_info ", "2": " xs_ok ", "3": " xs_redirect ", "4": " xs_client ", "5": " xs_server "}
# by group number: the kind, and its fixed replacement (None for the kinds that look at the value)
_KIND = [""] * (_MASK.groups + 1)
_FIXED: list = [None] * (_MASK.groups + 1)
for _name, _i in _MASK.groupindex.items():
    _KIND[_i] = _name.split("_")[0]
    if _KIND[_i] not in ("status", "dur", "pct"):
        _FIXED[_i] = _ALIASES.get(_KIND[_i], " x" + _KIND[_i] + " ")
del _name, _i
_DUR_SPLIT = re.compile(r"(\d+(?:\.\d+)?)[ \t]?(\D+)")

# Placeholder words the masks produce; they say a value was there, not what the message is about, so they
# don't count as known words when measuring familiarity.
PLACEHOLDERS = frozenset(
    {
        "xurl",
        "xemail",
        "xuuid",
        "xmac",
        "xip",
        "xhex",
        "xpath",
        "xdur",
        "xdur_fast",
        "xdur_ms",
        "xdur_s",
        "xdur_10s",
        "xdur_min",
        "xpct_hi",
        "xpct_mid",
        "xpct_lo",
        "xsize",
        "xnum",
        "xs_info",
        "xs_ok",
        "xs_redirect",
        "xs_client",
        "xs_server",
    }
)

# Words of two or more letters/underscores, or the document separator. Digits split words (j12 -> j).
_TOKEN = re.compile(r"[^\W\d][^\W\d]+|\x01")
# The same on ASCII text, about twice as fast: one leading class lets the engine skip in C, no Unicode lookups.
_TOKEN_ASCII = re.compile(r"[\x01A-Za-z_](?:(?<=\x01)|[A-Za-z_]+)")


def _words(masked: str) -> list[str]:
    return (_TOKEN_ASCII if masked.isascii() else _TOKEN).findall(masked)


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
    group = m.lastindex or 0  # _MASK is one alternation of groups: every match has a last group
    fixed = _FIXED[group]
    if fixed is not None:
        return fixed
    kind = _KIND[group]
    if kind == "status":
        # keep the word, bucket the code: "status=503" -> "status xs_server" (the class digit is 3rd from the end)
        return " status " + _STATUS_CLASS[m.group(0)[-3]]
    if kind == "dur":
        return _duration_token(m.group(0))
    value = float(m.group(0).rstrip("% \t"))
    return " xpct_hi " if value >= 90 else (" xpct_mid " if value >= 50 else " xpct_lo ")


def mask_batch(messages) -> str:
    """Lower-case and mask a batch; returns the joined, masked text (documents separated by _SEP)."""
    messages = messages if isinstance(messages, list) else list(messages)
    text = _SEP.join(messages)
    if text.count(_SEP_TOKEN) > len(messages) - 1:
        # A message holds the separator character itself (a control character of no meaning): read it as
        # white space, or it would split the message into two documents.
        text = _SEP.join(m.replace(_SEP_TOKEN, " ") for m in messages)
    return _MASK.sub(_replace, text.lower())


def mask(message: str) -> str:
    """The masked form of one message (for templates, tests and explanations)."""
    return " ".join(_words(mask_batch([message])))


def tokenize_batch(messages) -> list[list[str]]:
    """Unigram token lists per message, after masking."""
    tokens = _words(mask_batch(messages))
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
    """Token stream of a batch (for fit): unigrams then bigrams, as one flat list.

    Returns (tokens, doc_of_token).
    """
    uni = _words(mask_batch(messages))
    uni_arr = np.array(uni, dtype=object)
    is_sep = uni_arr == _SEP_TOKEN if uni else np.zeros(0, dtype=bool)
    # document index of every unigram (separators belong to the next document, then are dropped)
    doc_of = np.cumsum(is_sep)
    # bigrams over the flat stream; those touching a separator are dropped with it
    if len(uni) > 1:
        pair_ok = ~(is_sep[:-1] | is_sep[1:])
        bi = [a + " " + b for a, b in pairwise(uni)]
        bi_arr = np.array(bi, dtype=object)[pair_ok]
        bi_doc = doc_of[:-1][pair_ok]
    else:
        bi_arr = np.zeros(0, dtype=object)
        bi_doc = np.zeros(0, dtype=np.int64)
    keep = ~is_sep
    uni_arr, uni_doc = uni_arr[keep], doc_of[keep]
    tokens = np.concatenate([uni_arr, bi_arr]) if len(bi_arr) else uni_arr
    docs = np.concatenate([uni_doc, bi_doc]) if len(bi_arr) else uni_doc
    return tokens, docs.astype(np.int64)


class _Lookup:
    """Integer tables for transform(), derived from a vocabulary (cached on the vectorizer, never pickled).

    Every word that is a feature or part of a feature bigram gets an id 0..K-1 (the document separator gets
    K); a bigram is found by the key id_a * (K + 1) + id_b in a sorted array instead of building its string.
    """

    def __init__(self, vocabulary: dict, placeholder: np.ndarray):
        self.vocabulary, self.placeholder = vocabulary, placeholder
        words: dict[str, int] = {}
        pairs = []
        for token, col in vocabulary.items():
            parts = token.split(" ")
            if _SEP_TOKEN in parts:  # the separator is never a word, nor part of a pair
                continue
            if len(parts) == 1:
                words.setdefault(token, len(words))
            elif len(parts) == 2:  # other keys with a space can never be produced
                a, b = (words.setdefault(t, len(words)) for t in parts)
                pairs.append((a, b, col))
        k = len(words) + 1
        words[_SEP_TOKEN] = k - 1
        self.words, self.sep = words, k - 1
        # per word id (index -1, i.e. the separator slot, also serves unknown words): column and placeholder
        self.col = np.full(k, -1, dtype=np.int64)
        self.is_placeholder = np.zeros(k, dtype=bool)
        for token, i in words.items():
            col = vocabulary.get(token, -1) if i != self.sep else -1
            self.col[i] = col
            self.is_placeholder[i] = col >= 0 and bool(placeholder[col])
        keys = np.array([a * k + b for a, b, _ in pairs], dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        self.pair_keys = keys[order]
        self.pair_cols = np.array([c for _, _, c in pairs], dtype=np.int64)[order]
        self.k = k


class LogVectorizer:
    """Masked word unigrams + bigrams, sublinear TF-IDF, L2-normalised rows; the vocabulary is bounded."""

    def __init__(self, min_df: int = 2, max_features: int = 60000):
        self.min_df = min_df
        self.max_features = max_features
        self.vocabulary_: dict[str, int] = {}
        self.idf_: np.ndarray = np.zeros(0)
        self.placeholder_: np.ndarray = np.zeros(0, dtype=bool)

    def __getstate__(self):
        # the lookup cache is derived data: keep it out of saved models (and their hashes)
        state = self.__dict__
        if "_lookup" in state:
            state = {k: v for k, v in state.items() if k != "_lookup"}
        return state

    def _tables(self) -> _Lookup:
        t = self.__dict__.get("_lookup")
        if t is None or t.vocabulary is not self.vocabulary_ or t.placeholder is not self.placeholder_:
            t = self._lookup = _Lookup(self.vocabulary_, self.placeholder_)
        return t

    @property
    def n_features(self) -> int:
        return len(self.vocabulary_)

    def fit(self, messages) -> LogVectorizer:
        messages = list(messages)
        tokens, docs = _stream(messages)
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
        t = self._tables()
        words = _words(mask_batch(messages))
        ids = np.fromiter(map(t.words.get, words, repeat(-1)), dtype=np.int64, count=len(words))
        is_sep = ids == t.sep
        doc = np.cumsum(is_sep)  # separators belong to the next document; they are never counted
        col = t.col[ids]  # -1 for separators and unknown words (id -1 reads the separator's slot)
        # bigrams: adjacent pairs not touching a separator; a pair with an unknown word has no key in the table
        pair_ok = ~(is_sep[:-1] | is_sep[1:])
        if len(t.pair_keys) and len(ids) > 1:
            keys = ids[:-1] * t.k + ids[1:]  # never a table key if either id is -1 or the separator
            pos = np.minimum(np.searchsorted(t.pair_keys, keys), len(t.pair_keys) - 1)
            pair_col = np.where(t.pair_keys[pos] == keys, t.pair_cols[pos], -1)
        else:
            pair_col = np.full(max(len(ids) - 1, 0), -1, dtype=np.int64)
        pair_doc = doc[:-1]
        # familiarity: the share of the message's words and word pairs the vocabulary knows; placeholders
        # alone are neither known nor unknown words (pairs with them count: "took xdur_s" is a pattern)
        counted = ~(is_sep | t.is_placeholder[ids])
        known_word = counted & (col >= 0)
        known_pair = pair_ok & (pair_col >= 0)
        total = np.bincount(doc[counted], minlength=n) + np.bincount(pair_doc[pair_ok], minlength=n)
        known_n = np.bincount(doc[known_word], minlength=n) + np.bincount(pair_doc[known_pair], minlength=n)
        familiarity = (known_n / np.maximum(total, 1)).astype(np.float32)
        # counts per (row, column): unique keys come out sorted by row, then column = CSR order
        known = col >= 0
        keys, counts = np.unique(
            np.concatenate([doc[known] * F + col[known], pair_doc[known_pair] * F + pair_col[known_pair]]),
            return_counts=True,
        )
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // F, minlength=n), out=indptr[1:])
        X = sp.csr_matrix((counts.astype(np.float64), (keys % F).astype(np.int32), indptr), shape=(n, F))
        # sublinear tf, idf, L2 norm
        np.log(X.data, out=X.data)
        X.data += 1.0
        X.data *= self.idf_[X.indices]
        row_nnz = np.diff(X.indptr)
        norms = np.sqrt(np.bincount(np.repeat(np.arange(n), row_nnz), weights=X.data**2, minlength=n))
        norms[norms == 0] = 1.0
        X.data /= np.repeat(norms, row_nnz)
        return Features(X, familiarity)

    def fit_transform(self, messages) -> Features:
        messages = list(messages)
        return self.fit(messages).transform(messages)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Plain arrays and JSON values (streamer.ml.artifacts saves them as .npz/.json, never pickled)."""
        tokens = sorted(self.vocabulary_, key=self.vocabulary_.__getitem__)
        if [self.vocabulary_[t] for t in tokens] != list(range(len(tokens))):
            raise ValueError("vocabulary columns are not 0..n-1")
        arrays = {
            "idf": np.asarray(self.idf_, dtype=np.float64),
            "placeholder": np.asarray(self.placeholder_, dtype=bool),
        }
        return (arrays, {"min_df": int(self.min_df), "max_features": int(self.max_features), "vocabulary": tokens})

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> LogVectorizer:
        vec = cls(min_df=int(params["min_df"]), max_features=int(params["max_features"]))
        tokens = params["vocabulary"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError("vocabulary must be a list of strings")
        vec.vocabulary_ = {t: j for j, t in enumerate(tokens)}
        vec.idf_ = np.asarray(arrays["idf"], dtype=np.float64)
        vec.placeholder_ = np.asarray(arrays["placeholder"], dtype=bool)
        if (
            vec.idf_.shape != (len(tokens),)
            or vec.placeholder_.shape != (len(tokens),)
            or len(vec.vocabulary_) != len(tokens)
        ):
            raise ValueError("vocabulary, idf and placeholder lengths differ (or repeated words)")
        return vec
