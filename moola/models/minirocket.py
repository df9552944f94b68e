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
