"""Classification metrics on the val rows, the majority baseline, and paired bootstrap CIs."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    return float(f1_score(y_true, y_pred, average="macro", labels=list(range(n_classes)), zero_division=0))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, prefix: str = "val") -> dict:
    """Macro F1 (the gate metric), weighted F1, accuracy, balanced accuracy, predicted-class counts."""
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    labels = list(range(n_classes))
    return {
        f"{prefix}_f1": macro_f1(y_true, y_pred, n_classes),
        f"{prefix}_f1_weighted": float(f1_score(y_true, y_pred, average="weighted", labels=labels, zero_division=0)),
        f"{prefix}_acc": float(accuracy_score(y_true, y_pred)),
        f"{prefix}_balanced_acc": float(balanced_accuracy_score(y_true, y_pred)),
        f"{prefix}_pred_counts": np.bincount(y_pred, minlength=n_classes).tolist(),
    }


def majority_baseline(train_y: np.ndarray, val_y: np.ndarray, n_classes: int) -> dict:
    """Scores of always predicting the train majority class on val."""
    majority = int(np.bincount(train_y, minlength=n_classes).argmax())
    y_pred = np.full_like(val_y, majority)
    return {"majority_class": majority, "majority_f1": macro_f1(val_y, y_pred, n_classes),
            "majority_acc": float(accuracy_score(val_y, y_pred))}


def macro_f1_rows(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro F1 of each row of `(B, n)` label arrays at once; equals `macro_f1` row by row
    (a class absent from both truth and prediction scores 0, like sklearn's zero_division=0)."""
    scores = np.zeros(y_true.shape[0])
    for k in range(n_classes):
        true_k, pred_k = y_true == k, y_pred == k
        tp = (true_k & pred_k).sum(axis=1)
        denominator = true_k.sum(axis=1) + pred_k.sum(axis=1)  # 2tp + fp + fn
        scores += np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    return scores / n_classes


def balanced_accuracy_rows(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced accuracy of each row of `(B, n)` label arrays: recall averaged over the classes
    present in that row's truth (as sklearn's `balanced_accuracy_score`)."""
    recalls, present = np.zeros(y_true.shape[0]), np.zeros(y_true.shape[0])
    for k in range(n_classes):
        true_k = y_true == k
        support = true_k.sum(axis=1)
        recalls += np.where(support > 0, (true_k & (y_pred == k)).sum(axis=1) / np.maximum(support, 1), 0.0)
        present += support > 0
    return recalls / np.maximum(present, 1)


def paired_bootstrap_delta(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_classes: int,
                           n_resamples: int = 1000, seed: int = 17) -> dict:
    """Macro-F1(a) - macro-F1(b) with a 95% percentile CI from resampling the same val rows for both."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    index = rng.integers(0, n, size=(n_resamples, n))  # (B, n) the same rows for a and b
    deltas = (macro_f1_rows(y_true[index], pred_a[index], n_classes)
              - macro_f1_rows(y_true[index], pred_b[index], n_classes))  # (B,)
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {"delta": macro_f1(y_true, pred_a, n_classes) - macro_f1(y_true, pred_b, n_classes),
            "delta_ci95": [float(low), float(high)]}
