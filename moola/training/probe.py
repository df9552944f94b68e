"""Linear probe: how much class signal frozen encoder features carry (gate 3)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from moola.models.encoder import BiLSTMEncoder
from moola.training.batches import to_device


@torch.no_grad()
def encoder_features(encoder: BiLSTMEncoder, windows: np.ndarray, device: torch.device,
                     batch_size: int = 256) -> np.ndarray:
    """Mean- and max-pooled per-step features: `(n, T, C)` -> `(n, 4 * hidden_size)`."""
    was_training = encoder.training
    encoder.eval()
    try:
        pooled = []
        for begin in range(0, len(windows), batch_size):
            steps = encoder(to_device(torch.from_numpy(windows[begin: begin + batch_size]), device))  # (b, T, 2H)
            pooled.append(torch.cat([steps.mean(dim=1), steps.amax(dim=1)], dim=1).cpu())  # (b, 4H)
        return torch.cat(pooled).numpy()
    finally:
        encoder.train(was_training)


def probe_predict(train_features: np.ndarray, train_y: np.ndarray, scored_features: np.ndarray,
                  seed: int) -> np.ndarray:
    """Classes a logistic regression fitted on train features predicts for the scored rows (fixed C, no tuning)."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, random_state=seed,
                                                               class_weight="balanced"))
    probe.fit(train_features, train_y)
    return probe.predict(scored_features)

