"""Classification metrics (scikit-learn): accuracy, precision, recall, F1 with Wilson intervals; ROC-AUC and
AUPRC with bootstrap intervals."""

from __future__ import annotations

from typing import Sequence

from .stats import bootstrap_ci, rate


def classification_metrics(
    labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5, n_boot: int = 500, seed: int = 0
) -> dict:
    import numpy as np
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    if len(y) != len(s):
        raise ValueError(f"{len(y)} labels for {len(s)} scores")
    pred = s >= threshold
    out = {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "threshold": threshold,
        "accuracy": rate(list(pred == y)),
        "precision": rate(list(y[pred] == 1)),
        "recall": rate(list(pred[y == 1])),
        "specificity": rate(list(~pred[y == 0])),
    }
    f1 = lambda yy, ss: f1_score(yy, ss >= threshold, zero_division=0.0)  # noqa: E731
    out["f1"] = {"value": float(f1(y, s)), "n": int(len(y)), "ci95": bootstrap_ci(f1, y, s, n_boot=n_boot, seed=seed)}
    if 0 < y.sum() < len(y):
        out["roc_auc"] = {
            "value": float(roc_auc_score(y, s)),
            "n": int(len(y)),
            "ci95": bootstrap_ci(roc_auc_score, y, s, n_boot=n_boot, seed=seed),
        }
        out["auprc"] = {
            "value": float(average_precision_score(y, s)),
            "n": int(len(y)),
            "ci95": bootstrap_ci(average_precision_score, y, s, n_boot=n_boot, seed=seed),
        }
    return out
