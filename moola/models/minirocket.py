"""MiniRocket control (gate 2): sktime's multivariate MiniRocket, scaling, ridge with CV'd alpha."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


class MiniRocketClassifier:
    """MiniRocketMultivariate features -> StandardScaler(with_mean=False) -> RidgeClassifierCV.

    Takes windows `(n, T, C)` (the library's layout) and hands sktime numpy3D `(n, C, T)`.
    The transform is kept outside an sklearn `Pipeline`: sktime estimators do not carry the
    callback context that recent sklearn pipelines set on their steps.
    """

    def __init__(self, seed: int = 17, n_jobs: int = 1):
        self.seed = seed
        self.n_jobs = n_jobs

    def _features(self, windows: np.ndarray) -> np.ndarray:
        panel = np.ascontiguousarray(np.asarray(windows, dtype=np.float64).transpose(0, 2, 1))  # (n, T, C) -> (n, C, T)
        return np.asarray(self.transform_.transform(panel), dtype=np.float64)  # (n, ~10k)

    def fit(self, windows: np.ndarray, y: np.ndarray) -> MiniRocketClassifier:
        try:  # numba compile: imported only when used
            from sktime.transformations.rocket import MiniRocketMultivariate
        except ImportError:  # sktime < 0.30 kept it under panel/
            from sktime.transformations.panel.rocket import MiniRocketMultivariate

        panel = np.ascontiguousarray(np.asarray(windows, dtype=np.float64).transpose(0, 2, 1))  # (n, C, T)
        self.transform_ = MiniRocketMultivariate(random_state=self.seed, n_jobs=self.n_jobs).fit(panel)
        self.head_ = make_pipeline(StandardScaler(with_mean=False), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
        self.head_.fit(self._features(windows), y)
        return self

    def decision_function(self, windows: np.ndarray) -> np.ndarray:
        return self.head_.decision_function(self._features(windows))

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return self.head_.predict(self._features(windows))


def score_proba(scores: np.ndarray) -> np.ndarray:
    """Ridge decision scores as an `(n, K)` softmax: monotone, so isotonic calibration can map them
    to probabilities; on their own they are not probabilities."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:  # binary: one score for class 1
        scores = np.stack([-scores, scores], axis=1) / 2
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _transform_multi():
    """sktime's numba MiniRocket transform (a private function: its module moved across releases)."""
    try:
        from sktime.transformations.rocket._minirocket_multi_numba import _transform_multi as transform
    except ImportError:  # sktime < 0.30
        from sktime.transformations.panel.rocket._minirocket_multi_numba import _transform_multi as transform
    return transform


class MiniRocketArrays:
    """A fitted `MiniRocketClassifier` as plain arrays, which a weights-only file can hold: sktime's
    transform parameters (kernel channels, dilations, features per dilation, biases), the scaler's
    scale and the ridge's coefficients and intercept. Scores exactly as the classifier did."""

    PARAMETERS = ("num_channels_per_combination", "channel_indices", "dilations", "num_features_per_dilation",
                  "biases")  # the order of sktime's `MiniRocketMultivariate.parameters` tuple
    BATCH = 2048  # windows transformed at a time (~160 MB of float64 features)

    def __init__(self, arrays: dict):
        self.arrays = {name: np.asarray(value) for name, value in arrays.items()}

    @classmethod
    def from_classifier(cls, model: MiniRocketClassifier) -> MiniRocketArrays:
        scaler, ridge = model.head_[0], model.head_[-1]
        return cls({**dict(zip(cls.PARAMETERS, model.transform_.parameters)), "scale": scaler.scale_,
                    "coef": np.atleast_2d(ridge.coef_), "intercept": np.atleast_1d(ridge.intercept_)})

    def state_dict(self) -> dict:
        import torch

        return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in self.arrays.items()}

    @classmethod
    def from_state_dict(cls, state: dict) -> MiniRocketArrays:
        return cls({name: value.numpy() for name, value in state.items()})

    def decision_function(self, windows: np.ndarray) -> np.ndarray:
        """Ridge scores of windows `(n, T, C)`: `(n,)` for two classes, else `(n, K)`."""
        transform, parameters = _transform_multi(), tuple(self.arrays[name] for name in self.PARAMETERS)
        parts = []
        for begin in range(0, len(windows), self.BATCH):  # ~10k float64 features a window: bounded memory
            batch = np.asarray(windows[begin: begin + self.BATCH], dtype=np.float32)
            panel = np.ascontiguousarray(batch.transpose(0, 2, 1))  # (b, T, C) -> (b, C, T)
            features = np.asarray(transform(panel, parameters), dtype=np.float64)  # (b, ~10k)
            parts.append((features / self.arrays["scale"]) @ self.arrays["coef"].T + self.arrays["intercept"])
        scores = np.concatenate(parts) if parts else np.zeros((0, len(self.arrays["intercept"])))  # (n, 1 or K)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, windows: np.ndarray) -> np.ndarray:
        return score_proba(self.decision_function(windows))
