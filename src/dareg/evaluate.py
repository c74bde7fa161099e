"""Metrics in label units (years for age) on the target test split, beside a constant baseline,
with bootstrap confidence intervals, age-specific scores and the feature-alignment diagnostic."""
from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from dareg import losses


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


def cumulative_score(truth: np.ndarray, pred: np.ndarray, within: float = 5.0) -> float:
    """CS(within): the share of predictions with |pred - truth| <= within (age: years)."""
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(truth, float)) <= within))


def mae_by_decade(truth: np.ndarray, pred: np.ndarray) -> dict:
    """MAE per true-age decade, {"20-29": {"n": ..., "mae": ...}} in age order, empty ones left out.

    decade = 10 * floor(truth / 10); a model that only learned the mean shows a V over decades.
    """
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    decades = (np.floor(truth / 10) * 10).astype(int)
    return {f"{d}-{d + 9}": {"n": int(np.sum(decades == d)),
                             "mae": float(np.mean(np.abs(pred - truth)[decades == d]))}
            for d in np.unique(decades)}


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of a with the same row of b, (B, n) -> (B,); NaN if constant."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    denom = np.sqrt((a**2).sum(1) * (b**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(1) / denom, np.nan)


def bootstrap_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n) indices drawn with replacement: the same seed gives the same resamples."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def bootstrap_ci(truth: np.ndarray, pred: np.ndarray, samples: int, seed: int,
                 level: float = 0.95) -> dict:
    """Percentile bootstrap intervals {"mae": {"low", "high"}, "spearman": ...} over test images.

    Each resample b draws n images with replacement; spearman_b = pearson(rank(truth_b), rank(pred_b))
    with average ranks for ties; the interval is the (1-level)/2 and (1+level)/2 quantiles.
    """
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    idx = bootstrap_indices(len(truth), samples, seed)
    t, p = truth[idx], pred[idx]
    mae = np.abs(p - t).mean(1)
    rho = _row_pearson(stats.rankdata(t, axis=1), stats.rankdata(p, axis=1))
    finite = rho[np.isfinite(rho)]
    return {"level": level, "samples": samples, "mae": _interval(mae, level),
            "spearman": _interval(finite, level) if len(finite) else None}


def _interval(resampled: np.ndarray, level: float) -> dict:
    """The central `level` percentile interval of bootstrap values."""
    low, high = np.quantile(resampled, [(1 - level) / 2, (1 + level) / 2])
    return {"low": float(low), "high": float(high)}


def paired_mae_difference(truth: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                          samples: int, seed: int, level: float = 0.95) -> dict:
    """MAE(a) - MAE(b) on the same test images, with a paired percentile bootstrap interval.

    The same resampled images score both models, so what the images share cancels out; the
    difference is beyond noise when the interval excludes 0 (negative: a has the lower error).
    """
    truth = np.asarray(truth, float)
    gap = np.abs(np.asarray(pred_a, float) - truth) - np.abs(np.asarray(pred_b, float) - truth)
    ci = _interval(gap[bootstrap_indices(len(gap), samples, seed)].mean(1), level)
    return {"difference": float(gap.mean()), "ci": ci, "level": level,
            "beyond_noise": bool(ci["low"] > 0 or ci["high"] < 0)}


@torch.no_grad()
def alignment_mmd(f_s: torch.Tensor, f_t: torch.Tensor, max_samples: int, seed: int) -> dict:
    """Unbiased squared MMD between source and target features with one Gaussian kernel whose
    bandwidth is the median pairwise squared distance of the pooled sample (median heuristic).

    At most `max_samples` a side, drawn without replacement (the cost is quadratic). Lower means
    the domains look more alike to the network; comparable across regimes of one task.
    """
    rng = np.random.default_rng(seed)
    f_s, f_t = (f[torch.from_numpy(np.sort(rng.permutation(len(f))[:max_samples]))]
                for f in (f_s, f_t))
    bandwidth = losses.median_bandwidth(f_s.double(), f_t.double())
    value = losses.mmd(f_s.double(), f_t.double(), [bandwidth], unbiased=True)
    return {"mmd": float(value), "bandwidth": float(bandwidth), "n_source": len(f_s),
            "n_target": len(f_t)}


def provenance(repo: Path, seed: int) -> dict:
    """What made these numbers: the git commit (null outside a git checkout), training seed, versions."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"git_commit": commit, "seed": seed, "torch": torch.__version__,
            "dvc": metadata.version("dvc")}
