"""Classification metrics (scikit-learn): accuracy, precision, recall, F1 with Wilson intervals; ROC-AUC and
AUPRC with bootstrap intervals; recall at a false-positive budget and a threshold sweep."""

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
        "false_positive_rate": rate(list(pred[y == 0])),
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


def recall_at_fpr(labels: Sequence[int], scores: Sequence[float], max_fpr: float) -> dict:
    """The best recall of any threshold whose false-positive rate is at most `max_fpr` (a threshold flags every
    score at or above it), with that threshold and its false-positive rate; recall as a rate with its interval."""
    import numpy as np
    from sklearn.metrics import roc_curve

    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    fpr, tpr, thresholds = roc_curve(y, s)
    i = int(np.flatnonzero(fpr <= max_fpr)[np.argmax(tpr[fpr <= max_fpr])])
    thr = float(thresholds[i])  # roc_curve's first threshold is +inf: nothing flagged
    flagged = s >= thr
    return {
        "max_fpr": max_fpr,
        "threshold": thr if np.isfinite(thr) else None,
        "fpr": float(fpr[i]),
        "recall": rate(list(flagged[y == 1])),
    }


def threshold_sweep(labels: Sequence[int], scores: Sequence[float], thresholds: Sequence[float]) -> list[dict]:
    """Recall and false-positive rate of `scores >= t` at each threshold t."""
    import numpy as np

    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    pos, neg = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    return [
        {
            "threshold": float(t),
            "recall": float(((s >= t) & (y == 1)).sum() / pos),
            "fpr": float(((s >= t) & (y == 0)).sum() / neg),
        }
        for t in thresholds
    ]
