"""The two models that share the vectorizer's matrix, each with one batch call that returns 0..1 scores.

LevelModel       multinomial logistic regression + temperature scaling (fitted on a later, held-out slice
                 of the training stream, with words that slice alone holds unknown, as on new data), mixed
                 with the class prior as familiarity drops; confidence is that mixed probability.
SupervisedAnomaly logistic regression on anomaly labels, temperature-scaled; score = P(anomaly).
RarityAnomaly    the former unsupervised novelty score (template rarity only), kept so older models load.
TemplateRarity   unsupervised detector when there are no labels: level prior x rarity of the template for its
                 service, counts updated from the stream, cut from a target alert rate.
ConstantLevel    when the training data holds a single level there is nothing to discriminate.
"""

from __future__ import annotations

import hashlib
import re
import threading
import zlib
from collections.abc import Sequence

import numpy as np

from streamer.ml.features import Features


class LinearWeights:
    """What scoring needs of a fitted linear classifier: its weights, bias and classes. The shipped models
    keep this instead of the scikit-learn estimator, so loading them does not import scikit-learn (most of a
    cold start)."""

    __slots__ = ("classes_", "coef_", "intercept_")

    def __init__(self, estimator):
        self.coef_ = np.ascontiguousarray(estimator.coef_)
        self.intercept_ = np.asarray(estimator.intercept_)
        self.classes_ = np.asarray(estimator.classes_)

    def __getstate__(self):
        return self.coef_, self.intercept_, self.classes_

    def __setstate__(self, state):
        self.coef_, self.intercept_, self.classes_ = state

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        classes = np.asarray(self.classes_)
        return (
            {
                "coef": np.asarray(self.coef_, dtype=np.float64),
                "intercept": np.asarray(self.intercept_, dtype=np.float64),
                "classes": classes.astype(str) if classes.dtype == object else classes,
            },
            {},
        )

    @classmethod
    def from_state(cls, arrays: dict, params: dict | None = None) -> LinearWeights:
        w = cls.__new__(cls)
        w.coef_ = np.ascontiguousarray(arrays["coef"], dtype=np.float64)
        w.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        w.classes_ = np.asarray(arrays["classes"])
        if w.coef_.ndim != 2 or w.intercept_.shape != (w.coef_.shape[0],) or w.classes_.ndim != 1:
            raise ValueError("coef, intercept and classes shapes do not fit together")
        return w


def _decision(clf, X) -> np.ndarray:
    """X · coefᵀ + intercept, one column per coefficient row: what sklearn's decision_function computes,
    without its per-call input validation; works on LinearWeights and on estimators pickled by older models."""
    return np.asarray(X @ clf.coef_.T) + clf.intercept_


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _fit_temperature(logits: np.ndarray, y_index: np.ndarray, loss: str = "nll") -> float:
    """Temperature T minimising the negative log-likelihood (or the Brier score) of softmax(logits / T) on
    held-out rows. Brier for the level model: on a small slice a few confidently wrong rows make the
    likelihood soften every answer (BGL 2k: T 1.74, ECE 0.154; Brier: T 0.51, ECE 0.075)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    if len(y_index) == 0:
        return 1.0
    rows = np.arange(len(y_index))
    onehot = np.zeros_like(logits, dtype=np.float64)
    onehot[rows, y_index] = 1.0

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y_index].mean())

    def brier(log_t: float) -> float:
        return float(((_softmax(logits / np.exp(log_t)) - onehot) ** 2).sum(axis=1).mean())

    res = minimize_scalar(
        brier if loss == "brier" else nll, bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-4}
    )
    return float(np.exp(res.x))


def _logistic(seed: int, C: float, class_weight=None):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000, tol=1e-4, class_weight=class_weight, random_state=seed)


class LevelModel:
    kind = "logistic-regression+temperature"

    def __init__(self, C: float = 10.0, seed: int = 0):
        self.C = C
        self.seed = seed
        self.temperature = 1.0
        self.classes_: np.ndarray = np.array([])
        self.prior_: np.ndarray = np.array([])
        self.clf: LinearWeights | None = None  # set by fit() or from_state()

    def fit(self, X, y, X_cal=None, y_cal=None, temperature: float | None = None) -> LevelModel:
        self.clf = LinearWeights(_logistic(self.seed, self.C).fit(X, y))
        self.classes_ = self.clf.classes_
        counts = np.array([np.sum(np.asarray(y) == c) for c in self.classes_], dtype=np.float64)
        self.prior_ = counts / counts.sum()
        if temperature is not None:
            self.temperature = temperature
        elif X_cal is not None and X_cal.shape[0]:
            known = np.isin(y_cal, self.classes_)
            idx = np.searchsorted(self.classes_, np.asarray(y_cal)[known])
            self.temperature = _fit_temperature(self._logits(X_cal[known]), idx, loss="brier")
        return self

    def _logits(self, X) -> np.ndarray:
        z = _decision(self.clf, X)
        if z.shape[1] == 1:
            z = z[:, 0]
        if z.ndim == 1:  # binary: sklearn returns one column
            z = np.column_stack([np.zeros_like(z), z])
        return z

    def predict_proba(self, X) -> np.ndarray:
        return _softmax(self._logits(X) / self.temperature)

    def predict(self, features: Features) -> tuple[list[str], np.ndarray]:
        """(predicted levels, confidence 0..1) for a whole batch: one decision_function call.

        The calibrated probabilities are mixed with the training class prior in proportion to familiarity:
        a message made of unknown words says nothing, and the intercept of a model trained on real
        messages is no estimate of the prior. The confidence is that mixed probability itself; multiplying
        it by familiarity again made in-domain answers under-confident (BGL ECE 0.62, see bench.quality).
        """
        f = features.familiarity.astype(np.float64)[:, None]
        p = f * self.predict_proba(features.X) + (1.0 - f) * self.prior_
        best = p.argmax(axis=1)
        conf = p[np.arange(len(best)), best]
        return self.classes_[best].tolist(), conf.astype(np.float32)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Plain arrays and JSON values (streamer.ml.artifacts saves them as .npz/.json, never pickled)."""
        arrays, _ = LinearWeights(self.clf).to_state()  # also takes an estimator pickled by an older model
        return (
            {**arrays, "prior": np.asarray(self.prior_, dtype=np.float64)},
            {"C": float(self.C), "seed": int(self.seed), "temperature": float(self.temperature)},
        )

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> LevelModel:
        m = cls(C=float(params["C"]), seed=int(params["seed"]))
        m.temperature = float(params["temperature"])
        m.clf = LinearWeights.from_state(arrays)
        m.classes_ = m.clf.classes_
        m.prior_ = np.asarray(arrays["prior"], dtype=np.float64)
        if m.prior_.shape != m.classes_.shape:
            raise ValueError("prior and classes lengths differ")
        return m


class ConstantLevel:
    kind = "constant (training data held one level)"

    def __init__(self, level: str):
        self.classes_ = np.array([level])
        self.temperature = 1.0

    def predict_proba(self, X) -> np.ndarray:
        return np.ones((X.shape[0], 1))

    def predict(self, features: Features) -> tuple[list[str], np.ndarray]:
        n = features.X.shape[0]
        return [self.classes_[0]] * n, features.familiarity.astype(np.float32)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        return {}, {"level": str(self.classes_[0]), "temperature": float(self.temperature)}

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> ConstantLevel:
        m = cls(str(params["level"]))
        m.temperature = float(params["temperature"])
        return m


class SupervisedAnomaly:
    kind = "logistic-regression+temperature (supervised)"
    supervised = True

    def __init__(self, C: float = 10.0, seed: int = 0):
        self.C = C
        self.seed = seed
        self.temperature = 1.0
        self.clf: LinearWeights | None = None  # set by fit() or from_state()

    def fit(self, X, y, X_cal=None, y_cal=None, temperature: float | None = None) -> SupervisedAnomaly:
        self.clf = LinearWeights(_logistic(self.seed, self.C).fit(X, np.asarray(y, dtype=bool)))
        if temperature is not None:
            self.temperature = temperature
        elif X_cal is not None and X_cal.shape[0] and np.unique(y_cal).size == 2:
            z = _decision(self.clf, X_cal)[:, 0]
            self.temperature = _fit_temperature(
                np.column_stack([np.zeros_like(z), z]), np.asarray(y_cal, dtype=np.int64)
            )
        return self

    def score(self, features: Features) -> np.ndarray:
        assert self.clf is not None, "score() before fit()"
        z = (np.asarray(features.X @ self.clf.coef_[0]) + self.clf.intercept_[0]) / self.temperature
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays, _ = LinearWeights(self.clf).to_state()
        return arrays, {"C": float(self.C), "seed": int(self.seed), "temperature": float(self.temperature)}

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> SupervisedAnomaly:
        m = cls(C=float(params["C"]), seed=int(params["seed"]))
        m.temperature = float(params["temperature"])
        m.clf = LinearWeights.from_state(arrays)
        return m


class RarityAnomaly:
    """score = 1 - familiarity * c / (c + k), c = training count of the row's feature set (its template)."""

    kind = "template rarity (unsupervised novelty)"
    supervised = False

    def __init__(self, k: float = 2.0):
        self.k = k
        self.counts: dict[bytes, int] = {}
        self.temperature = 1.0

    @staticmethod
    def _keys(X) -> list[bytes]:
        ind, ptr = X.indices, X.indptr
        return [
            hashlib.blake2b(np.sort(ind[ptr[i] : ptr[i + 1]]).tobytes(), digest_size=8).digest()
            for i in range(X.shape[0])
        ]

    def fit(self, features: Features) -> RarityAnomaly:
        counts: dict[bytes, int] = {}
        for key in self._keys(features.X):
            counts[key] = counts.get(key, 0) + 1
        self.counts = counts
        return self

    def score(self, features: Features) -> np.ndarray:
        get = self.counts.get
        c = np.fromiter((get(k, 0) for k in self._keys(features.X)), dtype=np.float64, count=features.X.shape[0])
        return (1.0 - features.familiarity * (c / (c + self.k))).astype(np.float32)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        keys = list(self.counts)  # 8-byte digests as rows of uint8 (an "S8" array would drop trailing NULs)
        return (
            {
                "keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 8),
                "counts": np.array([self.counts[k] for k in keys], dtype=np.int64),
            },
            {"k": float(self.k), "temperature": float(self.temperature)},
        )

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> RarityAnomaly:
        m = cls(k=float(params["k"]))
        m.temperature = float(params["temperature"])
        keys = np.ascontiguousarray(arrays["keys"], dtype=np.uint8)
        counts = np.asarray(arrays["counts"], dtype=np.int64)
        if keys.ndim != 2 or keys.shape[1] != 8 or counts.shape != (keys.shape[0],):
            raise ValueError("keys and counts shapes do not fit together")
        raw = keys.tobytes()
        m.counts = {raw[8 * i : 8 * i + 8]: c for i, c in enumerate(counts.tolist())}
        return m


# splitmix64 finaliser: spreads feature ids over 64 bits so that a row's key can be the SUM of its ids'
# hashes (order-free, one numpy reduceat for a whole batch instead of a hash call per row).
_GOLDEN, _M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix64(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        v = v.astype(np.uint64) + _GOLDEN
        v = (v ^ (v >> np.uint64(30))) * _M1
        v = (v ^ (v >> np.uint64(27))) * _M2
    return v ^ (v >> np.uint64(31))


# Tokens holding a digit (ids, counts, addresses, hex) are the variable part of a text key.
_VARIABLE = re.compile(r"(?<!\S)\S*\d\S*")  # anchored at a token's start: 3x faster than unanchored


def _text_key(message: str) -> int:
    b = _VARIABLE.sub("", message).encode("utf-8", "surrogatepass")
    return zlib.crc32(b) | (zlib.adler32(b) << 32)


def template_keys(
    X,
    services: Sequence[str | None] | None = None,
    messages: Sequence[str] | None = None,
    familiarity: np.ndarray | None = None,
) -> np.ndarray:
    """One uint64 per row: its template, per service. A row whose words the vocabulary all knows is keyed by
    the set of its words and word pairs; one holding unknown words (given messages and familiarity) by its
    text without digit-bearing tokens, so new text gets its own key and can become familiar in the stream."""
    n = X.shape[0]
    keys = np.zeros(n, dtype=np.uint64)
    lens = np.diff(X.indptr)
    rows = lens > 0
    if rows.any():
        keys[rows] = np.add.reduceat(_mix64(X.indices), X.indptr[:-1][rows])
    if messages is not None and familiarity is not None:
        for i in np.flatnonzero(familiarity < 1.0).tolist():
            keys[i] = _text_key(messages[i])
    if services is not None:
        ids: dict = {}
        svc = np.fromiter((ids.setdefault(s or "", len(ids)) for s in services), dtype=np.int64, count=n)
        salts = np.array(
            [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") for s in ids],
            dtype=np.uint64,
        )
        with np.errstate(over="ignore"):
            keys = keys + salts[svc] * (svc > 0)  # "" (no service) keeps the unsalted key
    return keys


# P(alert)-like weight of an event's level: what an operator pages for first. A never-seen INFO template
# scores 0.05, below MIN_CUT, so novelty alone never alerts (49 % of BGL's normal test lines are new).
LEVEL_PRIOR = {"FATAL": 1.0, "ERROR": 0.9, "WARN": 0.3, "INFO": 0.05, "DEBUG": 0.02}
UNKNOWN_LEVEL_PRIOR = 0.05
MIN_CUT = 0.1
DEFAULT_ALERT_RATE = 0.05  # BGL 2k without labels: F1 0.50 at 0.01, 0.84 at 0.05 (bench.quality sweep)
# rates at which the training score quantiles are kept, so the cut can follow another alert rate later
_RATE_GRID = np.geomspace(1e-4, 0.5, 64)


class TemplateRarity:
    """Unsupervised detector: score = level prior x rarity of the row's template (for its service).

    rarity = k / (k + c), c = how often it was seen before (training, then the stream: every scored batch
    is counted), so what keeps coming back stops alerting. For a message whose words the vocabulary all
    knows, c is the count of its RAREST word or word pair: exact word sets made every combination of
    component x exception x text its own template (built-in corpus: ROC-AUC 0.887 -> 0.940, F1 at rate
    0.05 0.217 -> 0.348 against the level rule's 0.326; BGL unchanged at 0.842). A message with unknown
    words is keyed by its text per service (template_keys), new at first and learnt later.
    The cut is the (1 - alert_rate) quantile of the training rows'
    scores, each scored leave-one-out (its own occurrence not counted), never below MIN_CUT.
    """

    kind = "template rarity x level prior (unsupervised, learns from the stream)"
    supervised = False
    MAX_KEYS = 2_000_000  # bounds memory on a stream of unique lines: rare keys are pruned beyond it

    def __init__(self, k: float = 5.0, alert_rate: float = DEFAULT_ALERT_RATE):
        self.k = float(k)
        self.alert_rate = float(alert_rate)
        self.threshold = MIN_CUT
        self.temperature = 1.0
        self.counts: dict[int, int] = {}  # text key -> sightings (messages with unknown words)
        self.feature_counts: np.ndarray | None = None  # per vocabulary column: rows holding it
        self.seen = 0
        self.train_quantiles = np.full(len(_RATE_GRID), MIN_CUT)
        self._lock = threading.Lock()

    @staticmethod
    def level_prior(levels: Sequence[str | None] | None, n: int) -> np.ndarray:
        if levels is None:
            return np.full(n, UNKNOWN_LEVEL_PRIOR)
        get = LEVEL_PRIOR.get
        return np.fromiter(
            (UNKNOWN_LEVEL_PRIOR if lv is None else get(lv, UNKNOWN_LEVEL_PRIOR) for lv in levels),
            dtype=np.float64,
            count=n,
        )

    def _lookup(self, keys: np.ndarray) -> np.ndarray:
        get = self.counts.get
        return np.fromiter((get(k, 0) for k in keys.tolist()), dtype=np.float64, count=len(keys))

    @staticmethod
    def _rarest(X, per_feature: np.ndarray) -> np.ndarray:
        """Per row: the smallest count among its features (0 for a row without any)."""
        out = np.zeros(X.shape[0])
        rows = np.diff(X.indptr) > 0
        if rows.any() and len(per_feature):
            cols = np.minimum(X.indices, len(per_feature) - 1)
            vals = np.where(X.indices < len(per_feature), per_feature[cols], 0.0)
            out[rows] = np.minimum.reduceat(vals, X.indptr[:-1][rows])
        return out

    def _seen_before(self, features: Features, keys: np.ndarray) -> np.ndarray:
        unknown = features.familiarity < 1.0
        c = np.zeros(len(keys))
        if unknown.any():
            c[unknown] = self._lookup(keys[unknown])
        if self.feature_counts is not None and not unknown.all():
            c[~unknown] = self._rarest(features.X, self.feature_counts)[~unknown]
        return c

    def _score(self, c: np.ndarray, prior: np.ndarray) -> np.ndarray:
        return prior * (self.k / (self.k + c))

    def fit(self, features: Features, levels=None, services=None, messages=None) -> TemplateRarity:
        keys = template_keys(features.X, services, messages, features.familiarity)
        unknown = features.familiarity < 1.0
        uniq, inverse, counts = np.unique(keys[unknown], return_inverse=True, return_counts=True)
        self.counts = dict(zip(uniq.tolist(), counts.tolist(), strict=True))
        self.feature_counts = np.bincount(features.X.indices, minlength=features.X.shape[1]).astype(np.float64)
        self.seen = len(keys)
        loo = self._rarest(features.X, self.feature_counts) - 1.0
        loo[unknown] = counts[inverse] - 1.0
        train = self._score(np.maximum(loo, 0.0), self.level_prior(levels, len(keys)))
        self.train_quantiles = (
            np.quantile(train, 1.0 - _RATE_GRID, method="higher") if len(train) else np.full(len(_RATE_GRID), MIN_CUT)
        )
        self.threshold = self.threshold_for(self.alert_rate)
        return self

    def threshold_for(self, alert_rate: float) -> float:
        """The cut that would have flagged about alert_rate of the training rows (never below MIN_CUT)."""
        if not 0.0 < alert_rate < 1.0:
            raise ValueError(f"alert rate must be within (0, 1), got {alert_rate}")
        r = np.clip(alert_rate, _RATE_GRID[0], _RATE_GRID[-1])
        q = float(np.interp(np.log(r), np.log(_RATE_GRID), self.train_quantiles))
        return max(MIN_CUT, q)

    def score(self, features: Features, levels=None, services=None, messages=None, learn: bool = False) -> np.ndarray:
        """Scores with the counts so far; learn=True then counts the batch (keys computed once)."""
        n = features.X.shape[0]
        keys = template_keys(features.X, services, messages, features.familiarity)
        scores = self._score(self._seen_before(features, keys), self.level_prior(levels, n)).astype(np.float32)
        if learn:
            self._count(features, keys)
        return scores

    def update(self, features: Features, services=None, messages=None) -> None:
        """Count a scored batch's templates (the statistics keep learning after training)."""
        self._count(features, template_keys(features.X, services, messages, features.familiarity))

    def _count(self, features: Features, keys: np.ndarray) -> None:
        uniq, counts = np.unique(keys[features.familiarity < 1.0], return_counts=True)
        per_feature = np.bincount(features.X.indices, minlength=features.X.shape[1])
        with self._lock:
            if self.feature_counts is None or len(self.feature_counts) < len(per_feature):
                grown = np.zeros(len(per_feature))
                if self.feature_counts is not None:
                    grown[: len(self.feature_counts)] = self.feature_counts
                self.feature_counts = grown
            self.feature_counts[: len(per_feature)] += per_feature
            get = self.counts.get
            fresh = {k: get(k, 0) + c for k, c in zip(uniq.tolist(), counts.tolist(), strict=True)}
            self.counts.update(fresh)
            self.seen += len(keys)
            if len(self.counts) > self.MAX_KEYS:  # keep the templates that recur; seen-once ones go first
                keep = sorted(self.counts.items(), key=lambda kv: kv[1], reverse=True)[: self.MAX_KEYS // 2]
                self.counts = dict(keep)

    partial_fit = update

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        keys = np.fromiter(self.counts.keys(), dtype=np.uint64, count=len(self.counts))
        counts = np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts))
        order = np.argsort(keys)
        features = np.zeros(0) if self.feature_counts is None else self.feature_counts
        return (
            {
                "keys": keys[order],
                "counts": counts[order],
                "feature_counts": np.asarray(features, np.float64),
                "train_quantiles": np.asarray(self.train_quantiles, dtype=np.float64),
            },
            {"k": self.k, "alert_rate": self.alert_rate, "threshold": self.threshold, "seen": int(self.seen)},
        )

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> TemplateRarity:
        model = cls(k=float(params["k"]), alert_rate=float(params["alert_rate"]))
        keys = np.asarray(arrays["keys"], dtype=np.uint64)
        counts = np.asarray(arrays["counts"], dtype=np.int64)
        quantiles = np.asarray(arrays["train_quantiles"], dtype=np.float64)
        if keys.shape != counts.shape or keys.ndim != 1 or quantiles.shape != _RATE_GRID.shape:
            raise ValueError("template rarity state: keys/counts/quantiles have the wrong shape")
        model.counts = dict(zip(keys.tolist(), counts.tolist(), strict=True))
        features = np.asarray(arrays.get("feature_counts", np.zeros(0)), dtype=np.float64)
        if features.ndim != 1:
            raise ValueError("template rarity state: feature_counts must be one row")
        model.feature_counts = features if len(features) else None
        model.train_quantiles = quantiles
        model.threshold = float(params["threshold"])
        model.seen = int(params.get("seen", int(counts.sum())))
        return model

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
