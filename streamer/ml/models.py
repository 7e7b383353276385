"""The models that share the vectorizer's matrix, in the scikit-learn shape.

Every estimator takes the vectorizer's Features (the TF-IDF matrix and each row's familiarity) in fit and in
every prediction method; hyperparameters are set in __init__, what fit learns ends in `_` (set by fit or
from_state only), and fit returns self. The unsupervised detectors also take per-row metadata (levels,
services, messages) as keyword arguments, as scikit-learn routes sample metadata.

LevelModel        multinomial logistic regression + temperature scaling (fitted on a later, held-out slice of
                  the training stream, with words that slice alone holds unknown, as on new data), mixed with
                  the class prior as familiarity drops; predict -> labels, predict_proba -> those mixed
                  probabilities (the confidence is the predicted level's).
ConstantLevel     when the training data holds a single level there is nothing to discriminate.
SupervisedAnomaly logistic regression on anomaly labels, temperature-scaled; score_samples = P(anomaly).
RarityAnomaly     the former unsupervised novelty score (template rarity only), kept so older models load.
TemplateRarity    unsupervised detector when there are no labels: level prior x rarity of the template for its
                  service, counts updated from the stream (partial_fit), cut from a target alert rate.

Artifacts written before the `_` names (params "temperature", "threshold", "seen"; pickles holding `clf`,
`counts`...) load through _learned() and _renamed_state().
"""

from __future__ import annotations

import hashlib
import re
import threading
import zlib
from collections.abc import Sequence

import numpy as np

from streamer.ml.features import Features


def _learned(params: dict, name: str, default=None):
    """A learned value from a part's JSON params: `name_` as written now, `name` as written before."""
    if f"{name}_" in params:
        return params[f"{name}_"]
    if name in params:
        return params[name]
    if default is None:
        raise KeyError(f"{name}_")
    return default


# pickled attribute names of releases before the scikit-learn shape -> today's
_OLD_NAMES = {
    "temperature": "temperature_",
    "threshold": "threshold_",
    "counts": "counts_",
    "feature_counts": "feature_counts_",
    "seen": "seen_",
    "train_quantiles": "train_quantiles_",
}


def _renamed_state(state: dict) -> dict:
    """A pickled model's __dict__ with old attribute names renamed (the converter unpickles old releases)."""
    state = {_OLD_NAMES.get(k, k): v for k, v in state.items()}
    clf = state.pop("clf", None)
    if clf is not None:  # a LinearWeights or a scikit-learn estimator
        state.update(coef_=np.ascontiguousarray(clf.coef_), intercept_=np.asarray(clf.intercept_))
        state.setdefault("classes_", np.asarray(clf.classes_))
    return state


class LinearWeights:
    """Weights, bias and classes of a linear classifier, as older pickled models hold them (unpickling those
    needs the class; nothing else uses it)."""

    __slots__ = ("classes_", "coef_", "intercept_")

    def __getstate__(self):
        return self.coef_, self.intercept_, self.classes_

    def __setstate__(self, state):
        self.coef_, self.intercept_, self.classes_ = state


class _Linear:
    """The fitted logistic regression's weights as plain arrays: scoring does not import scikit-learn (most
    of a cold start) nor pay for its per-call input validation."""

    coef_: np.ndarray
    intercept_: np.ndarray
    classes_: np.ndarray

    def _fit_linear(self, X: Features, y, C: float, seed: int, class_weight=None) -> None:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=C, max_iter=2000, tol=1e-4, class_weight=class_weight, random_state=seed)
        clf.fit(X.X, y)
        self.coef_ = np.ascontiguousarray(clf.coef_, dtype=np.float64)
        self.intercept_ = np.asarray(clf.intercept_, dtype=np.float64)
        self.classes_ = np.asarray(clf.classes_)

    def _raw_decision(self, X: Features) -> np.ndarray:
        """X · coefᵀ + intercept, one column per coefficient row."""
        return np.asarray(X.X @ self.coef_.T) + self.intercept_

    def _linear_state(self) -> dict[str, np.ndarray]:
        classes = np.asarray(self.classes_)
        return {
            "coef": np.asarray(self.coef_, dtype=np.float64),
            "intercept": np.asarray(self.intercept_, dtype=np.float64),
            "classes": classes.astype(str) if classes.dtype == object else classes,
        }

    def _linear_from_state(self, arrays: dict) -> None:
        self.coef_ = np.ascontiguousarray(arrays["coef"], dtype=np.float64)
        self.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        self.classes_ = np.asarray(arrays["classes"])
        if self.coef_.ndim != 2 or self.intercept_.shape != (self.coef_.shape[0],) or self.classes_.ndim != 1:
            raise ValueError("coef, intercept and classes shapes do not fit together")

    def __setstate__(self, state):
        self.__dict__.update(_renamed_state(state))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _fit_temperature(logits: np.ndarray, y_index: np.ndarray, loss: str = "nll", power=None) -> float:
    """Temperature T minimising the negative log-likelihood (or the Brier score) of softmax(logits / T) on
    held-out rows. Brier for the level model: on a small slice a few confidently wrong rows make the
    likelihood soften every answer (BGL 2k: T 1.74, ECE 0.154; Brier: T 0.51, ECE 0.075). The likelihood
    goes through log_softmax: a confidently wrong row's log-probability must not underflow. power: per row,
    the exponent e of the temperature that row is divided by (T ** e; None: 1 for every row)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    if len(y_index) == 0:
        return 1.0
    rows = np.arange(len(y_index))
    onehot = np.zeros_like(logits, dtype=np.float64)
    onehot[rows, y_index] = 1.0
    exponent = np.ones((len(rows), 1)) if power is None else np.asarray(power, dtype=np.float64)[:, None]

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t * exponent), axis=1)[rows, y_index].mean())

    def brier(log_t: float) -> float:
        return float(((_softmax(logits / np.exp(log_t * exponent)) - onehot) ** 2).sum(axis=1).mean())

    res = minimize_scalar(
        brier if loss == "brier" else nll, bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-4}
    )
    return float(np.exp(res.x))


# S is learnt from held-out rows of which at most half the words and pairs are known: rows that know more
# say little about text known less (the built-in corpus's hold-out holds only rows at familiarity >= 0.8,
# and S learnt from them, 0.14, took Loghub text the default model does not know to confidence 0.9-0.97 at
# accuracy 0.45-0.86). Fewer such rows than MIN_MIXTURE_ROWS leave S at 1: a handful pushes it to a bound.
MIXTURE_FAMILIARITY = 0.5
MIN_MIXTURE_ROWS = 30


class LevelModel(_Linear):
    """mixed = f x softmax(z / T) + (1 - f) x prior, f = the row's familiarity: a message made of unknown
    words says little, and the intercept of a model trained on real messages is no estimate of the prior.
    predict_proba = softmax(log mixed / S ** (1 - f)): the mixture's own temperature, felt by a row as much
    as it holds unknown words (a known row keeps T alone); the labels are the mixture's argmax whatever S
    is. T minimises the Brier score on the calibration slice (later rows, with the words only they hold
    unknown, as on new data); S minimises it on the hold-out rows (the newest 20 %, never fitted on;
    train() calls calibrate_mixture) that know at most half their words, and is 1 with fewer than
    MIN_MIXTURE_ROWS of them (the built-in corpus) or in models saved before S. The confidence is the
    predicted level's probability itself; multiplying it by familiarity again made in-domain answers
    under-confident (BGL ECE 0.62, see bench.quality).

    BGL 2k (ECE / macro-F1 of the last 20 %): without S 0.075 / 0.971, with S (0.66, 183 rows) 0.048 /
    0.971; Android keeps S 1 (11 rows): 0.021 / 0.966. BGL's training stream ends in a burst of FATAL
    register dumps, so its calibration slice says unfamiliar text is mostly wrong, while its newest rows
    and its test stretch are calm. Tried and measured (BGL ECE / macro-F1): the level distribution of the
    slice's unfamiliar rows in place of the prior 0.111 / 0.971; a Platt map on the top probability 0.097 /
    0.971; log-linear pooling (f x z / T + (1 - f) x log prior) with T fitted on it 0.028 / 0.946; T from 4
    chronological folds 0.19; T fitted on the mixture rather than the softmax 0.066 / 0.946; T and a
    familiarity exponent (f ** a in place of f) jointly on the slice 0.044 / 0.946; the mixing weight
    1 - (1 - f) c / (c + known features) with T and c on the slice 0.030 / 0.946 (every form that trusts
    the logits more on half-known text says FATAL for 7 INFO "machine check ..." lines, as all 7 "machine
    check" lines in training are); T from 5 leave-one-block-out folds 0.169; a temperature on the prior,
    fitted with T on the slice (it flattens the prior: 20) 0.176; S for every row (not ** (1 - f)) on the
    slice 0.049, on the hold-out 0.032, but all-right hold-out rows then drive S to its bound (Apache,
    HDFS: 0.05) and unknown text there gets the prior's top level at nearly 1.0; S ** (1 - f) on the slice
    (S 7.2) 0.212, on slice + hold-out 0.051, on every hold-out row with an unknown word 0.047 (see
    MIXTURE_FAMILIARITY for why not). LogisticRegression's class_weight="balanced" 0.181 / 0.980; neither
    it nor C 30 or 100 moves Android's macro-F1 off 0.966 (its misses are lines without a known word, which
    the prior decides); C 1 or 3 lose its one ERROR line (0.714)."""

    kind = "logistic-regression+temperature"

    def __init__(self, C: float = 10.0, seed: int = 0):
        self.C = C
        self.seed = seed

    def fit(self, X: Features, y, *, calibration: tuple[Features, Sequence] | None = None, calibrated_like=None):
        """calibration: (features, levels) of later rows the vocabulary has not seen; calibrated_like: a
        fitted LevelModel whose temperatures T and S are kept (a refit)."""
        self._fit_linear(X, y, self.C, self.seed)
        y = np.asarray(y)
        counts = np.array([np.sum(y == c) for c in self.classes_], dtype=np.float64)
        self.prior_ = counts / counts.sum()
        self.temperature_ = 1.0
        self.mixture_temperature_ = 1.0
        if calibrated_like is not None:
            self.temperature_ = float(calibrated_like.temperature_)
            self.mixture_temperature_ = float(getattr(calibrated_like, "mixture_temperature_", 1.0))
        elif calibration is not None and calibration[0].X.shape[0]:
            self._calibrate(*calibration)
        return self

    def _calibrate(self, X: Features, y) -> None:
        known = np.isin(y, self.classes_)
        idx = np.searchsorted(self.classes_, np.asarray(y)[known])
        logits = self.decision_function(Features(X.X[known], X.familiarity[known]))
        self.temperature_ = _fit_temperature(logits, idx, loss="brier")

    def calibrate_mixture(self, X: Features, y) -> LevelModel:
        """Fit S on the held-out rows below MIXTURE_FAMILIARITY (levels outside classes_ left out); with
        fewer than MIN_MIXTURE_ROWS of them S is 1 (the mixture as it is)."""
        y = np.asarray(y)
        rows = np.isin(y, self.classes_) & (X.familiarity < MIXTURE_FAMILIARITY)
        self.mixture_temperature_ = 1.0
        if rows.sum() >= MIN_MIXTURE_ROWS:
            part = Features(X.X[rows], X.familiarity[rows])
            self.mixture_temperature_ = _fit_temperature(
                self._log_mixture(part),
                np.searchsorted(self.classes_, y[rows]),
                loss="brier",
                power=1.0 - part.familiarity.astype(np.float64),
            )
        return self

    def decision_function(self, X: Features) -> np.ndarray:
        """Per-class logits, one column per class (also for two classes)."""
        z = self._raw_decision(X)
        if z.shape[1] == 1:  # binary: one coefficient row
            z = np.column_stack([np.zeros(len(z)), z[:, 0]])
        return z

    def _mixture(self, X: Features) -> np.ndarray:
        """f x softmax(z / T) + (1 - f) x prior."""
        f = X.familiarity.astype(np.float64)[:, None]
        return f * _softmax(self.decision_function(X) / self.temperature_) + (1.0 - f) * self.prior_

    def _log_mixture(self, X: Features) -> np.ndarray:
        """log of the mixture; a probability that underflowed to 0 stays finite."""
        return np.log(np.maximum(self._mixture(X), np.finfo(np.float64).tiny))

    def predict_proba(self, X: Features) -> np.ndarray:
        if self.mixture_temperature_ == 1.0:  # models saved before S was learnt score as they did
            return self._mixture(X)
        per_row = self.mixture_temperature_ ** (1.0 - X.familiarity.astype(np.float64))
        return _softmax(self._log_mixture(X) / per_row[:, None])

    def predict(self, X: Features) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Plain arrays and JSON values (streamer.ml.artifacts saves them as .npz/.json, never pickled)."""
        return (
            {**self._linear_state(), "prior": np.asarray(self.prior_, dtype=np.float64)},
            {
                "C": float(self.C),
                "seed": int(self.seed),
                "temperature_": float(self.temperature_),
                "mixture_temperature_": float(self.mixture_temperature_),
            },
        )

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> LevelModel:
        m = cls(C=float(params["C"]), seed=int(params["seed"]))
        m.temperature_ = float(_learned(params, "temperature"))
        m.mixture_temperature_ = float(params.get("mixture_temperature_", 1.0))  # before: the mixture as is
        if not 0.0 < m.mixture_temperature_ < np.inf:
            raise ValueError(f"mixture temperature must be finite and > 0, got {m.mixture_temperature_}")
        m._linear_from_state(arrays)
        m.prior_ = np.asarray(arrays["prior"], dtype=np.float64)
        if m.prior_.shape != m.classes_.shape:
            raise ValueError("prior and classes lengths differ")
        return m

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("mixture_temperature_", 1.0)


class ConstantLevel:
    """The one level seen in training; its 'probability' is the row's familiarity (how sure the answer is
    that unknown text holds that level too)."""

    kind = "constant (training data held one level)"

    def __init__(self, level: str = "INFO"):
        self.level = level

    def fit(self, X: Features | None = None, y=None) -> ConstantLevel:
        self.classes_ = np.array([self.level])
        self.temperature_ = 1.0
        return self

    def decision_function(self, X: Features) -> np.ndarray:
        return np.zeros((X.X.shape[0], 1))

    def predict_proba(self, X: Features) -> np.ndarray:
        return X.familiarity.astype(np.float64)[:, None]

    def predict(self, X: Features) -> np.ndarray:
        return np.repeat(self.classes_, X.X.shape[0])

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        return {}, {"level": str(self.classes_[0]), "temperature_": float(self.temperature_)}

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> ConstantLevel:
        m = cls(str(params["level"])).fit()
        m.temperature_ = float(_learned(params, "temperature", 1.0))
        return m

    def __setstate__(self, state):
        state = _renamed_state(state)
        state.setdefault("level", str(state["classes_"][0]))
        self.__dict__.update(state)


def best_f1_threshold(scores: np.ndarray, truth: np.ndarray) -> float:
    """Threshold maximising F1 (within 0.05..0.95, ties -> closest to 0.5)."""
    best, best_f1 = 0.5, -1.0
    for t in np.round(np.arange(0.05, 0.951, 0.01), 2):
        pred = scores >= t
        tp = float(np.sum(pred & truth))
        f1 = 2 * tp / max(float(pred.sum() + truth.sum()), 1.0)
        if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_f1 = float(t), f1
    return best


# The familiarity gate (streamer.ml.scorer): a supervised score counts only on text at least as familiar as
# most of the detector's calibration rows, which the fitted vocabulary had not seen (as on new data):
# min_familiarity_ is their GATE_QUANTILE quantile, at most MAX_GATE; artifacts saved before it was learnt
# keep the fixed DEFAULT_MIN_FAMILIARITY. One fixed gate cannot serve both: 0.75 took OpenSSH from 5.1 % to
# 0.9 % flagged with the shipped model but gated BGL's own text for a model trained on BGL (supervised F1
# 0.979 -> 0.933). Learnt: the built-in corpus's calibration rows are all fully familiar, so the shipped
# model's gate is MAX_GATE (OpenSSH's flagged lines had familiarity 0.72-0.875: 0 % flagged); BGL's own
# model learns 0.08 (its lines hold many one-off tokens) and keeps F1 0.979 (bench.quality part 1).
DEFAULT_MIN_FAMILIARITY = 0.6
GATE_QUANTILE = 0.05
MAX_GATE = 0.9


def learnt_min_familiarity(calibration_familiarity: np.ndarray) -> float:
    """The gate a detector learns from its calibration rows' familiarity (none: the fixed default)."""
    if len(calibration_familiarity) == 0:
        return DEFAULT_MIN_FAMILIARITY
    return min(MAX_GATE, float(np.quantile(calibration_familiarity, GATE_QUANTILE)))


class SupervisedAnomaly(_Linear):
    """score_samples = P(anomaly), temperature-scaled; threshold_ maximises F1 on the calibration slice;
    min_familiarity_ is the gate below which the scorer does not trust it (learnt_min_familiarity)."""

    kind = "logistic-regression+temperature (supervised)"
    supervised = True

    def __init__(self, C: float = 10.0, seed: int = 0):
        self.C = C
        self.seed = seed

    def fit(self, X: Features, y=None, *, calibration: tuple[Features, Sequence] | None = None, calibrated_like=None):
        """y: anomaly labels (required); calibration: (features, labels) of later rows; calibrated_like: a
        fitted SupervisedAnomaly whose temperature and threshold are kept (a refit)."""
        if y is None:
            raise ValueError("SupervisedAnomaly needs anomaly labels")
        self._fit_linear(X, np.asarray(y, dtype=bool), self.C, self.seed)
        self.temperature_, self.threshold_ = 1.0, 0.5
        self.min_familiarity_ = DEFAULT_MIN_FAMILIARITY
        if calibrated_like is not None:
            self.temperature_, self.threshold_ = calibrated_like.temperature_, calibrated_like.threshold_
            self.min_familiarity_ = getattr(calibrated_like, "min_familiarity_", DEFAULT_MIN_FAMILIARITY)
            return self
        if calibration is not None:
            self.min_familiarity_ = learnt_min_familiarity(calibration[0].familiarity)
        if calibration is not None and calibration[0].X.shape[0] and np.unique(calibration[1]).size == 2:
            cal, truth = calibration[0], np.asarray(calibration[1], dtype=bool)
            z = self._raw_decision(cal)[:, 0]
            self.temperature_ = _fit_temperature(np.column_stack([np.zeros_like(z), z]), truth.astype(np.int64))
            self.threshold_ = best_f1_threshold(self.score_samples(cal), truth)
        return self

    def score_samples(self, X: Features) -> np.ndarray:
        z = (np.asarray(X.X @ self.coef_[0]) + self.intercept_[0]) / self.temperature_
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def predict_proba(self, X: Features) -> np.ndarray:
        p = self.score_samples(X).astype(np.float64)
        return np.column_stack([1.0 - p, p])

    def decision_function(self, X: Features) -> np.ndarray:
        """score_samples - threshold_: >= 0 is flagged."""
        return self.score_samples(X) - np.float32(self.threshold_)

    def predict(self, X: Features) -> np.ndarray:
        return self.decision_function(X) >= 0

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        return self._linear_state(), {
            "C": float(self.C),
            "seed": int(self.seed),
            "temperature_": float(self.temperature_),
            "threshold_": float(self.threshold_),
            "min_familiarity_": float(self.min_familiarity_),
        }

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> SupervisedAnomaly:
        m = cls(C=float(params["C"]), seed=int(params["seed"]))
        m.temperature_ = float(_learned(params, "temperature"))
        m.threshold_ = float(_learned(params, "threshold", 0.5))  # before: only in metadata.json
        m.min_familiarity_ = float(params.get("min_familiarity_", DEFAULT_MIN_FAMILIARITY))  # before: fixed
        if not 0.0 <= m.min_familiarity_ <= 1.0:
            raise ValueError(f"min_familiarity_ must be within 0..1, got {m.min_familiarity_}")
        m._linear_from_state(arrays)
        return m

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("threshold_", 0.5)
        self.__dict__.setdefault("min_familiarity_", DEFAULT_MIN_FAMILIARITY)


class RarityAnomaly:
    """score = 1 - familiarity * c / (c + k), c = training count of the row's feature set (its template)."""

    kind = "template rarity (unsupervised novelty)"
    supervised = False

    def __init__(self, k: float = 2.0):
        self.k = k

    @staticmethod
    def _keys(X) -> list[bytes]:
        ind, ptr = X.indices, X.indptr
        return [
            hashlib.blake2b(np.sort(ind[ptr[i] : ptr[i + 1]]).tobytes(), digest_size=8).digest()
            for i in range(X.shape[0])
        ]

    def fit(self, X: Features, y=None) -> RarityAnomaly:
        counts: dict[bytes, int] = {}
        for key in self._keys(X.X):
            counts[key] = counts.get(key, 0) + 1
        self.counts_ = counts
        self.temperature_ = 1.0
        return self

    def score_samples(self, X: Features) -> np.ndarray:
        get = self.counts_.get
        c = np.fromiter((get(k, 0) for k in self._keys(X.X)), dtype=np.float64, count=X.X.shape[0])
        return (1.0 - X.familiarity * (c / (c + self.k))).astype(np.float32)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        keys = list(self.counts_)  # 8-byte digests as rows of uint8 (an "S8" array would drop trailing NULs)
        return (
            {
                "keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 8),
                "counts": np.array([self.counts_[k] for k in keys], dtype=np.int64),
            },
            {"k": float(self.k), "temperature_": float(self.temperature_)},
        )

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> RarityAnomaly:
        m = cls(k=float(params["k"]))
        m.temperature_ = float(_learned(params, "temperature", 1.0))
        keys = np.ascontiguousarray(arrays["keys"], dtype=np.uint8)
        counts = np.asarray(arrays["counts"], dtype=np.int64)
        if keys.ndim != 2 or keys.shape[1] != 8 or counts.shape != (keys.shape[0],):
            raise ValueError("keys and counts shapes do not fit together")
        raw = keys.tobytes()
        m.counts_ = {raw[8 * i : 8 * i + 8]: c for i, c in enumerate(counts.tolist())}
        return m

    def __setstate__(self, state):
        self.__dict__.update(_renamed_state(state))


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


def keep_recurring(counts: dict[int, int], limit: int) -> dict[int, int]:
    """counts itself while it holds at most `limit` keys; beyond, the limit // 2 most counted (a stream of
    unique lines must not grow memory forever: seen-once keys go first)."""
    if len(counts) <= limit:
        return counts
    return dict(sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[: limit // 2])


class TemplateRarity:
    """Unsupervised detector: score = level prior x rarity of the row's template (for its service).

    rarity = k / (k + c), c = how often it was seen before (training, then the stream: every scored batch
    is counted by partial_fit), so what keeps coming back stops alerting. For a message whose words the
    vocabulary all knows, c is the count of its RAREST word or word pair: exact word sets made every
    combination of component x exception x text its own template (built-in corpus: ROC-AUC 0.887 -> 0.940,
    F1 at rate 0.05 0.217 -> 0.348 against the level rule's 0.326; BGL unchanged at 0.842). A message with
    unknown words is keyed by its text per service (template_keys), new at first and learnt later.
    The cut threshold_ is the (1 - alert_rate) quantile of the training rows' scores, each scored
    leave-one-out (its own occurrence not counted), never below MIN_CUT.

    Per-row metadata goes by keyword: levels (declared, else predicted; the prior), services (the template
    is per service) and messages (the text key of unfamiliar rows).
    """

    kind = "template rarity x level prior (unsupervised, learns from the stream)"
    supervised = False
    MAX_KEYS = 2_000_000  # bounds memory on a stream of unique lines: rare keys are pruned beyond it

    def __init__(self, k: float = 5.0, alert_rate: float = DEFAULT_ALERT_RATE):
        self.k = float(k)
        self.alert_rate = float(alert_rate)
        self._lock = threading.Lock()

    def _empty(self) -> None:
        self.threshold_ = MIN_CUT
        self.temperature_ = 1.0
        self.counts_: dict[int, int] = {}  # text key -> sightings (messages with unknown words)
        self.feature_counts_: np.ndarray | None = None  # per vocabulary column: rows holding it
        self.seen_ = 0
        self.train_quantiles_ = np.full(len(_RATE_GRID), MIN_CUT)

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
        get = self.counts_.get
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

    def _seen_before(self, X: Features, keys: np.ndarray) -> np.ndarray:
        unknown = X.familiarity < 1.0
        c = np.zeros(len(keys))
        if unknown.any():
            c[unknown] = self._lookup(keys[unknown])
        if self.feature_counts_ is not None and not unknown.all():
            c[~unknown] = self._rarest(X.X, self.feature_counts_)[~unknown]
        return c

    def _score(self, c: np.ndarray, prior: np.ndarray) -> np.ndarray:
        return prior * (self.k / (self.k + c))

    def fit(self, X: Features, y=None, *, levels=None, services=None, messages=None) -> TemplateRarity:
        """y is ignored (no labels: that is the point)."""
        keys = template_keys(X.X, services, messages, X.familiarity)
        unknown = X.familiarity < 1.0
        uniq, inverse, counts = np.unique(keys[unknown], return_inverse=True, return_counts=True)
        self._empty()
        self.counts_ = dict(zip(uniq.tolist(), counts.tolist(), strict=True))
        self.feature_counts_ = np.bincount(X.X.indices, minlength=X.X.shape[1]).astype(np.float64)
        self.seen_ = len(keys)
        loo = self._rarest(X.X, self.feature_counts_) - 1.0
        loo[unknown] = counts[inverse] - 1.0
        train = self._score(np.maximum(loo, 0.0), self.level_prior(levels, len(keys)))
        if len(train):
            self.train_quantiles_ = np.quantile(train, 1.0 - _RATE_GRID, method="higher")
        self.threshold_ = self.threshold_for(self.alert_rate)
        return self

    def threshold_for(self, alert_rate: float) -> float:
        """The cut that would have flagged about alert_rate of the training rows (never below MIN_CUT)."""
        if not 0.0 < alert_rate < 1.0:
            raise ValueError(f"alert rate must be within (0, 1), got {alert_rate}")
        r = np.clip(alert_rate, _RATE_GRID[0], _RATE_GRID[-1])
        q = float(np.interp(np.log(r), np.log(_RATE_GRID), self.train_quantiles_))
        return max(MIN_CUT, q)

    def score_samples(self, X: Features, *, levels=None, services=None, messages=None, learn: bool = False):
        """Scores with the counts so far; learn=True then counts the batch (keys computed once)."""
        n = X.X.shape[0]
        keys = template_keys(X.X, services, messages, X.familiarity)
        scores = self._score(self._seen_before(X, keys), self.level_prior(levels, n)).astype(np.float32)
        if learn:
            self._count(X, keys)
        return scores

    def decision_function(self, X: Features, *, levels=None, services=None, messages=None) -> np.ndarray:
        """score_samples - threshold_: >= 0 is flagged."""
        scores = self.score_samples(X, levels=levels, services=services, messages=messages)
        return scores - np.float32(self.threshold_)

    def predict(self, X: Features, *, levels=None, services=None, messages=None) -> np.ndarray:
        return self.decision_function(X, levels=levels, services=services, messages=messages) >= 0

    def partial_fit(self, X: Features, y=None, *, services=None, messages=None) -> TemplateRarity:
        """Count a scored batch's templates (the statistics keep learning after training)."""
        if not hasattr(self, "counts_"):
            self._empty()
        self._count(X, template_keys(X.X, services, messages, X.familiarity))
        return self

    def _count(self, X: Features, keys: np.ndarray) -> None:
        uniq, counts = np.unique(keys[X.familiarity < 1.0], return_counts=True)
        per_feature = np.bincount(X.X.indices, minlength=X.X.shape[1])
        with self._lock:
            if self.feature_counts_ is None or len(self.feature_counts_) < len(per_feature):
                grown = np.zeros(len(per_feature))
                if self.feature_counts_ is not None:
                    grown[: len(self.feature_counts_)] = self.feature_counts_
                self.feature_counts_ = grown
            self.feature_counts_[: len(per_feature)] += per_feature
            get = self.counts_.get
            fresh = {k: get(k, 0) + c for k, c in zip(uniq.tolist(), counts.tolist(), strict=True)}
            self.counts_.update(fresh)
            self.seen_ += len(keys)
            self.counts_ = keep_recurring(self.counts_, self.MAX_KEYS)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        keys = np.fromiter(self.counts_.keys(), dtype=np.uint64, count=len(self.counts_))
        counts = np.fromiter(self.counts_.values(), dtype=np.int64, count=len(self.counts_))
        order = np.argsort(keys)
        features = np.zeros(0) if self.feature_counts_ is None else self.feature_counts_
        return (
            {
                "keys": keys[order],
                "counts": counts[order],
                "feature_counts": np.asarray(features, np.float64),
                "train_quantiles": np.asarray(self.train_quantiles_, dtype=np.float64),
            },
            {"k": self.k, "alert_rate": self.alert_rate, "threshold_": self.threshold_, "seen_": int(self.seen_)},
        )

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> TemplateRarity:
        model = cls(k=float(params["k"]), alert_rate=float(params["alert_rate"]))
        keys = np.asarray(arrays["keys"], dtype=np.uint64)
        counts = np.asarray(arrays["counts"], dtype=np.int64)
        quantiles = np.asarray(arrays["train_quantiles"], dtype=np.float64)
        if keys.shape != counts.shape or keys.ndim != 1 or quantiles.shape != _RATE_GRID.shape:
            raise ValueError("template rarity state: keys/counts/quantiles have the wrong shape")
        model.counts_ = dict(zip(keys.tolist(), counts.tolist(), strict=True))
        features = np.asarray(arrays.get("feature_counts", np.zeros(0)), dtype=np.float64)
        if features.ndim != 1:
            raise ValueError("template rarity state: feature_counts must be one row")
        model.feature_counts_ = features if len(features) else None
        model.train_quantiles_ = quantiles
        model.threshold_ = float(_learned(params, "threshold"))
        model.seen_ = int(_learned(params, "seen", int(counts.sum())))
        return model

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(_renamed_state(state))
        self._lock = threading.Lock()
