"""Metrics in label units (years for age) on the target test split, beside a constant baseline,
with bootstrap confidence intervals, age-specific scores and the feature-alignment diagnostic.

A label may be a vector of K factors (dSprites' scale, x, y): truth (n, K), predictions (n, K)
or (seeds, n, K). Then each factor gets its own metrics; `mae` is their mean (tllib's convention)
and `mae_sum` their sum (RSD's and DARE-GRAM's); the intervals and paired comparisons work on each
image's mean error over the factors (and on the mean of the factors' rank correlations). One
factor, as (n,) or (n, 1), gives exactly the single-label metrics.
"""
from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from dareg import losses


def regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict:
    """mae, rmse, spearman, pearson, collapse_ratio and n; correlations are null when either side
    is constant. collapse_ratio = std(pred) / std(truth): near 1 for a model that spreads its
    predictions like the labels, near 0 for one that predicts about the same for every image."""
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    error = pred - truth
    varied = len(truth) > 1 and np.ptp(truth) > 0 and np.ptp(pred) > 0
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "spearman": float(stats.spearmanr(truth, pred)[0]) if varied else None,
        "pearson": float(stats.pearsonr(truth, pred)[0]) if varied else None,
        "collapse_ratio": float(np.std(pred) / np.std(truth)) if np.std(truth) > 0 else None,
        "n": int(len(truth)),
    }


def factor_metrics(truth: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    """regression_metrics for labels (n, K): one factor gives its metrics as they are; several
    give the mean over factors of mae, rmse, spearman, pearson and collapse_ratio (null if any
    factor's is), mae_sum, n, and each factor's own metrics under its name."""
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    if truth.ndim == 1 or truth.shape[1] == 1:
        return regression_metrics(truth.reshape(len(truth)), pred.reshape(len(pred)))
    each = {name: regression_metrics(truth[:, k], pred[:, k]) for k, name in enumerate(names)}
    keys = ("mae", "rmse", "spearman", "pearson", "collapse_ratio")
    mean = {key: _mean_or_none([m[key] for m in each.values()]) for key in keys}
    return {**mean, "mae_sum": float(sum(m["mae"] for m in each.values())), "n": len(truth), **each}


def _mean_or_none(values: list) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))


def baseline(truth: np.ndarray, train_labels: np.ndarray) -> dict:
    """Predicting the target training mean (of each factor) for every test image: the floor to
    beat. Several factors: the mean over factors of MAE and RMSE, and mae_sum."""
    truth, train_labels = np.asarray(truth, float), np.asarray(train_labels, float)
    if truth.ndim == 1 or truth.shape[1] == 1:
        constant = float(np.mean(train_labels))
        error = constant - truth.reshape(-1)
        return {"prediction": constant, "mae": float(np.mean(np.abs(error))),
                "rmse": float(np.sqrt(np.mean(error**2)))}
    constant = train_labels.mean(0)
    error = constant - truth
    mae = np.abs(error).mean(0)
    return {"prediction": constant.tolist(), "mae": float(mae.mean()), "mae_sum": float(mae.sum()),
            "rmse": float(np.sqrt((error**2).mean(0)).mean())}


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


def factor_columns(truth: np.ndarray, pred: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(truth (n,), predictions (seeds, n)) per factor, from truth (n,) with pred (n,) or
    (seeds, n), or truth (n, K) with pred (n, K) or (seeds, n, K)."""
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    if truth.ndim == 1:
        return [(truth, np.atleast_2d(pred))]
    pred = pred if pred.ndim == 3 else pred[None]
    return [(truth[:, k], pred[:, :, k]) for k in range(truth.shape[1])]


def bootstrap_ci(truth: np.ndarray, pred: np.ndarray, samples: int, seed: int,
                 level: float = 0.95) -> dict:
    """Percentile bootstrap intervals {"mae": {"low", "high"}, "spearman": ...} over test images.

    pred: (n,), or (seeds, n) with one row per training seed (with truth (n, K): (n, K) or
    (seeds, n, K)). Each resample b draws n images with replacement; spearman_b =
    pearson(rank(truth_b), rank(pred_b)) with average ranks for ties; with several seeds a
    resample's statistic is the mean over seeds on the same images (so the interval is for the
    seed-mean, over test images), and with several factors the mean over factors. The interval
    is the (1-level)/2 and (1+level)/2 quantiles.
    """
    columns = factor_columns(truth, pred)
    idx = bootstrap_indices(len(columns[0][0]), samples, seed)
    mae, rho = [], []
    for truth_k, preds in columns:
        t = truth_k[idx]
        t_ranks = stats.rankdata(t, axis=1)
        mae.append(np.mean([np.abs(p[idx] - t).mean(1) for p in preds], axis=0))
        rho.append(np.mean([_row_pearson(t_ranks, stats.rankdata(p[idx], axis=1)) for p in preds], axis=0))
    mae, rho = np.mean(mae, axis=0), np.mean(rho, axis=0)
    finite = rho[np.isfinite(rho)]
    return {"level": level, "samples": samples, "mae": _interval(mae, level),
            "spearman": _interval(finite, level) if len(finite) else None}


def _interval(resampled: np.ndarray, level: float) -> dict:
    """The central `level` percentile interval of bootstrap values."""
    low, high = np.quantile(resampled, [(1 - level) / 2, (1 + level) / 2])
    return {"low": float(low), "high": float(high)}


def paired_difference(truth: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                      samples: int, seed: int, statistic: str = "mae", level: float = 0.95) -> dict:
    """stat(a) - stat(b) on the same test images, with a paired percentile bootstrap interval;
    stat is the MAE (negative: a has the lower error) or Spearman's rho (positive: a ranks better).

    pred_a, pred_b: (n,), or (seeds, n) with one row per training seed (a regime's statistic is
    then the mean over its seeds); with truth (n, K), (n, K) or (seeds, n, K), and a statistic
    is the mean over factors (for the MAE: of each image's mean error over the factors).
    Resample b draws n test images I_b, the same for both regimes, so what the images share
    cancels out; a regime with S > 1 seeds also draws S of its seeds with replacement, so the
    interval holds the seed-to-seed spread too:
        diff_b = mean_{s in S_a,b} stat_s(a; I_b) - mean_{s in S_b,b} stat_s(b; I_b)
    The difference is beyond noise when the interval excludes 0. None for Spearman when a
    regime's predictions are constant (its rho is undefined).
    """
    truths = [t for t, _ in factor_columns(truth, pred_a)]
    idx = bootstrap_indices(len(truths[0]), samples, seed)
    seed_rng = np.random.default_rng([seed, 1])
    t_ranks = [stats.rankdata(t[idx], axis=1) for t in truths] if statistic == "spearman" else None

    def score(p: np.ndarray, truth: np.ndarray, k: int, rows: np.ndarray | None) -> np.ndarray:
        if statistic == "mae":
            return np.abs(p - truth).mean() if rows is None else np.abs(p[rows] - truth[rows]).mean(1)
        if rows is None:
            return regression_metrics(truth, p)["spearman"] or np.nan
        return _row_pearson(t_ranks[k], stats.rankdata(p[rows], axis=1))

    def resampled(pred) -> tuple[float, np.ndarray]:  # the regime's value and its (samples,) resamples
        columns = factor_columns(truth, pred)  # per factor: (n,), (seeds, n)
        seeds = len(columns[0][1])
        per_seed = np.mean([np.stack([score(p, t, k, idx) for p in preds], axis=1)
                            for k, (t, preds) in enumerate(columns)], axis=0)  # (samples, seeds)
        if seeds > 1:
            per_seed = np.take_along_axis(per_seed, seed_rng.integers(0, seeds, per_seed.shape), 1)
        value = np.mean([np.mean([score(p, t, k, None) for p in preds])
                         for k, (t, preds) in enumerate(columns)])
        return float(value), per_seed.mean(1)

    (value_a, boot_a), (value_b, boot_b) = resampled(pred_a), resampled(pred_b)
    diffs = boot_a - boot_b
    if not np.isfinite(value_a - value_b) or not np.isfinite(diffs).all():
        return None
    ci = _interval(diffs, level)
    return {"difference": value_a - value_b, "ci": ci, "level": level,
            "beyond_noise": bool(ci["low"] > 0 or ci["high"] < 0)}


def paired_mae_difference(truth, pred_a, pred_b, samples: int, seed: int, level: float = 0.95) -> dict:
    """MAE(a) - MAE(b) with its paired bootstrap interval (paired_difference)."""
    return paired_difference(truth, pred_a, pred_b, samples, seed, "mae", level)


def seed_spread(values: list[float | None]) -> dict | None:
    """Mean, standard deviation (n - 1 in the denominator; 0 for one seed), min and max of a
    metric over training seeds; None where any seed has no value (a constant prediction)."""
    if any(v is None for v in values):
        return None
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


def mean_over_seeds(records: list[dict]) -> dict:
    """Key-wise mean of per-seed dicts of numbers (nested dicts recursively, None if any is None);
    keys missing from some seeds (an age decade, say) are averaged over the seeds that have them."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    mean = {}
    for key in keys:
        values = [r[key] for r in records if key in r]
        if isinstance(values[0], dict):
            mean[key] = mean_over_seeds(values)
        elif any(v is None for v in values):
            mean[key] = None
        elif all(isinstance(v, int) for v in values) and len(set(values)) == 1:
            mean[key] = values[0]  # a count, the same for every seed
        else:
            mean[key] = float(np.mean(values))
    return mean


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


def provenance(repo: Path, seeds: list[int], device: str = "cpu", train_devices=()) -> dict:
    """What made these numbers: the git commit (null outside a git checkout), the training seeds
    (`seed`: the first, train.seed), the device evaluation ran on and those training ran on
    (`cpu` or `cuda (<name>)`), the torch and dvc versions (dvc null where it is not installed)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    try:
        dvc = metadata.version("dvc")
    except metadata.PackageNotFoundError:
        dvc = None
    return {"git_commit": commit, "seed": seeds[0], "seeds": list(seeds), "device": device,
            "train_devices": sorted(set(train_devices)), "torch": torch.__version__, "dvc": dvc}
