"""The two models that share the vectorizer's matrix, each with one batch call that returns 0..1 scores.

LevelModel       multinomial logistic regression + temperature scaling (fitted on a later, held-out slice
                 of the training stream), mixed with the class prior as familiarity drops; confidence is
                 that probability times the message's familiarity, so unfamiliar text gets low confidence.
SupervisedAnomaly logistic regression on anomaly labels, temperature-scaled; score = P(anomaly).
RarityAnomaly    unsupervised novelty when there are no labels: how rare the message's masked template (its
                 set of known features) was in the training stream, raised by the share of unknown tokens.
ConstantLevel    when the training data holds a single level there is nothing to discriminate.
"""

from __future__ import annotations

import hashlib

import numpy as np

from streamer.ml.features import Features


class LinearWeights:
    """What scoring needs of a fitted linear classifier: its weights, bias and classes. The shipped models
    keep this instead of the scikit-learn estimator, so loading them does not import scikit-learn (most of a
    cold start)."""

    __slots__ = ("coef_", "intercept_", "classes_")

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
        return ({"coef": np.asarray(self.coef_, dtype=np.float64),
                 "intercept": np.asarray(self.intercept_, dtype=np.float64),
                 "classes": classes.astype(str) if classes.dtype == object else classes}, {})

    @classmethod
    def from_state(cls, arrays: dict, params: dict | None = None) -> "LinearWeights":
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


def _fit_temperature(logits: np.ndarray, y_index: np.ndarray) -> float:
    """Temperature T minimising the negative log-likelihood of softmax(logits / T) on held-out rows."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    if len(y_index) == 0:
        return 1.0
    rows = np.arange(len(y_index))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y_index].mean())

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-4})
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
        self.clf = None

    def fit(self, X, y, X_cal=None, y_cal=None, temperature: float | None = None) -> "LevelModel":
        self.clf = LinearWeights(_logistic(self.seed, self.C).fit(X, y))
        self.classes_ = self.clf.classes_
        counts = np.array([np.sum(np.asarray(y) == c) for c in self.classes_], dtype=np.float64)
        self.prior_ = counts / counts.sum()
        if temperature is not None:
            self.temperature = temperature
        elif X_cal is not None and X_cal.shape[0]:
            known = np.isin(y_cal, self.classes_)
            idx = np.searchsorted(self.classes_, np.asarray(y_cal)[known])
            self.temperature = _fit_temperature(self._logits(X_cal[known]), idx)
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
        messages is no estimate of the prior.
        """
        f = features.familiarity.astype(np.float64)[:, None]
        p = f * self.predict_proba(features.X) + (1.0 - f) * self.prior_
        best = p.argmax(axis=1)
        conf = p[np.arange(len(best)), best] * features.familiarity
        return self.classes_[best].tolist(), conf.astype(np.float32)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Plain arrays and JSON values (streamer.ml.artifacts saves them as .npz/.json, never pickled)."""
        arrays, _ = LinearWeights(self.clf).to_state()  # also takes an estimator pickled by an older model
        return ({**arrays, "prior": np.asarray(self.prior_, dtype=np.float64)},
                {"C": float(self.C), "seed": int(self.seed), "temperature": float(self.temperature)})

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> "LevelModel":
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
    def from_state(cls, arrays: dict, params: dict) -> "ConstantLevel":
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
        self.clf = None

    def fit(self, X, y, X_cal=None, y_cal=None, temperature: float | None = None) -> "SupervisedAnomaly":
        self.clf = LinearWeights(_logistic(self.seed, self.C).fit(X, np.asarray(y, dtype=bool)))
        if temperature is not None:
            self.temperature = temperature
        elif X_cal is not None and X_cal.shape[0] and np.unique(y_cal).size == 2:
            z = _decision(self.clf, X_cal)[:, 0]
            self.temperature = _fit_temperature(np.column_stack([np.zeros_like(z), z]),
                                                np.asarray(y_cal, dtype=np.int64))
        return self

    def score(self, features: Features) -> np.ndarray:
        z = (np.asarray(features.X @ self.clf.coef_[0]) + self.clf.intercept_[0]) / self.temperature
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays, _ = LinearWeights(self.clf).to_state()
        return arrays, {"C": float(self.C), "seed": int(self.seed), "temperature": float(self.temperature)}

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> "SupervisedAnomaly":
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
        return [hashlib.blake2b(np.sort(ind[ptr[i]:ptr[i + 1]]).tobytes(), digest_size=8).digest()
                for i in range(X.shape[0])]

    def fit(self, features: Features) -> "RarityAnomaly":
        counts: dict[bytes, int] = {}
        for key in self._keys(features.X):
            counts[key] = counts.get(key, 0) + 1
        self.counts = counts
        return self

    def score(self, features: Features) -> np.ndarray:
        get = self.counts.get
        c = np.fromiter((get(k, 0) for k in self._keys(features.X)), dtype=np.float64,
                        count=features.X.shape[0])
        return (1.0 - features.familiarity * (c / (c + self.k))).astype(np.float32)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict]:
        keys = list(self.counts)  # 8-byte digests as rows of uint8 (an "S8" array would drop trailing NULs)
        return ({"keys": np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 8),
                 "counts": np.array([self.counts[k] for k in keys], dtype=np.int64)},
                {"k": float(self.k), "temperature": float(self.temperature)})

    @classmethod
    def from_state(cls, arrays: dict, params: dict) -> "RarityAnomaly":
        m = cls(k=float(params["k"]))
        m.temperature = float(params["temperature"])
        keys = np.ascontiguousarray(arrays["keys"], dtype=np.uint8)
        counts = np.asarray(arrays["counts"], dtype=np.int64)
        if keys.ndim != 2 or keys.shape[1] != 8 or counts.shape != (keys.shape[0],):
            raise ValueError("keys and counts shapes do not fit together")
        raw = keys.tobytes()
        m.counts = {raw[8 * i:8 * i + 8]: c for i, c in enumerate(counts.tolist())}
        return m
