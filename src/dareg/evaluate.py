"""Metrics in label units (years for age) on the target test split, beside a constant baseline."""
from __future__ import annotations

import numpy as np
from scipy import stats


def regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    """mae, rmse, spearman, pearson and n; correlations are null when either side is constant."""
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    error = pred - truth
    varied = len(truth) > 1 and np.ptp(truth) > 0 and np.ptp(pred) > 0
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "spearman": float(stats.spearmanr(truth, pred)[0]) if varied else None,
        "pearson": float(stats.pearsonr(truth, pred)[0]) if varied else None,
        "n": int(len(truth)),
    }


def baseline(truth: np.ndarray, train_labels: np.ndarray) -> dict:
    """Predicting the target training mean for every test image: the floor to beat."""
    constant = float(np.mean(train_labels))
    error = constant - np.asarray(truth, float)
    return {"prediction": constant, "mae": float(np.mean(np.abs(error))),
            "rmse": float(np.sqrt(np.mean(error**2)))}
