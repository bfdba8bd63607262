"""Metrics of predictions against encoded targets (docs/reference.md#json-outputs). Pure functions of arrays."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnctl.task import Task, predicted_classes, true_classes


def classification_report(Y: np.ndarray, yhat: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows = true)."""
    k = len(classes)
    t, p = true_classes(Y), predicted_classes(yhat)
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    # Macro-F1 over the classes that occur (true or predicted), as scikit-learn and torchmetrics:
    # a held-out file without some class is not penalised for it.
    present = (support + predicted) > 0
    binary = {"roc_auc": roc_auc(t, yhat[:, -1])} if k == 2 else {}  # yhat[:, -1]: the probability of class 1
    return {
        "accuracy": float(tp.sum() / max(len(t), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        **binary,
        "classes": list(classes),
        "confusion_matrix": confusion.tolist(),
        "per_class": {
            str(c): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
    }


def multilabel_report(Y: np.ndarray, yhat: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Several independent 0/1 targets: element-wise accuracy, and one 2×2 report per label."""
    reports = {name: classification_report(Y[:, [j]], yhat[:, [j]], [0, 1]) for j, name in enumerate(labels)}
    return {
        "accuracy": Task("log_loss", Y.shape[1]).accuracy(Y, yhat),
        "macro_f1": float(np.mean([r["per_class"]["1"]["f1"] for r in reports.values()])),
        "classes": list(labels),
        "confusion_matrix": {name: r["confusion_matrix"] for name, r in reports.items()},
        "per_class": {name: r["per_class"]["1"] for name, r in reports.items()},
    }


def regression_report(Y: np.ndarray, yhat: np.ndarray, targets: list[str]) -> dict[str, Any]:
    """MSE, RMSE, MAE, R² and MAPE per target and averaged over targets (MAPE null where y has a 0)."""
    Y, yhat = Y.astype(np.float64), yhat.astype(np.float64)
    err = Y - yhat
    mse = (err**2).mean(axis=0)
    mae = np.abs(err).mean(axis=0)
    ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ss_res = (err**2).sum(axis=0)
        # A constant target: 1 for a perfect fit, else 0 (scikit-learn's convention).
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
        mape = [
            None if (Y[:, j] == 0).any() else float(np.mean(np.abs(err[:, j] / Y[:, j])) * 100)
            for j in range(Y.shape[1])
        ]
    per_target = {
        name: {
            "mse": float(mse[j]),
            "rmse": float(math.sqrt(mse[j])),
            "mae": float(mae[j]),
            "r2": float(r2[j]),
            "mape": mape[j],
        }
        for j, name in enumerate(targets)
    }
    return {
        "mse": float(mse.mean()),
        "rmse": float(np.sqrt(mse).mean()),
        "mae": float(mae.mean()),
        "r2": float(r2.mean()),
        "mape": None if None in mape else float(np.mean([m for m in mape if m is not None])),
        "per_target": per_target,
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve of scores (N,) for 0/1 labels (N,): the Mann–Whitney U statistic over
    n₁ n₀, with tied scores given their average rank (a tie between a positive and a negative counts ½).
    None when only one class is present."""
    positive = labels == 1
    n1 = int(np.count_nonzero(positive))
    n0 = len(labels) - n1
    if n1 == 0 or n0 == 0:
        return None
    _, inverse, counts = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # 1-based rank of each distinct score's last occurrence
    ranks = (last - (counts - 1) / 2.0)[inverse.reshape(-1)]  # average rank within each group of ties
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
