"""Loss terms of the `da` regime: Gaussian-kernel MMD between domains and cross-domain smoothing.

Names follow the transfer-learning literature: f_s, f_t are source and target features (n, d) and
(m, d); y_s, y_t are predictions (n,) and (m,).
"""
from __future__ import annotations

from typing import Sequence

import torch


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 as an (n, m) matrix; safe to differentiate at zero distance (unlike cdist)."""
    d2 = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2.0 * a @ b.T
    return d2.clamp_min(0.0)


def median_bandwidth(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Median heuristic: the median squared distance over all pairs of the pooled batch (no grad)."""
    with torch.no_grad():
        pooled = torch.cat([f_s, f_t])
        d2 = squared_distances(pooled, pooled)
        off_diagonal = d2[~torch.eye(len(pooled), dtype=torch.bool, device=d2.device)]
        return off_diagonal.median().clamp_min(1e-12)


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, bandwidths: Sequence[float] | torch.Tensor
                    ) -> torch.Tensor:
    """k(a_i, b_j) = mean_s exp(-||a_i - b_j||^2 / bandwidth_s), an (n, m) matrix.

    One bandwidth d (the feature size) is the seed's kernel; several make a multi-kernel one.
    """
    d2 = squared_distances(a, b)
    return torch.stack([torch.exp(-d2 / bw) for bw in bandwidths]).mean(0)


def mmd(f_s: torch.Tensor, f_t: torch.Tensor, bandwidths, unbiased: bool = True) -> torch.Tensor:
    """Squared maximum mean discrepancy between the samples f_s (n, d) and f_t (m, d).

    biased:   mean_ij k(s_i, s_j) + mean_ij k(t_i, t_j) - 2 mean_ij k(s_i, t_j)
    unbiased: the same with the diagonals i = j left out of the first two means, so identical
              samples are not rewarded (with 8 samples a side the biased form favours collapse).
    """
    k_ss, k_tt, k_st = (gaussian_kernel(a, b, bandwidths)
                        for a, b in ((f_s, f_s), (f_t, f_t), (f_s, f_t)))
    if not unbiased:
        return k_ss.mean() + k_tt.mean() - 2.0 * k_st.mean()
    n, m = len(f_s), len(f_t)
    within_s = (k_ss.sum() - k_ss.diagonal().sum()) / (n * (n - 1))
    within_t = (k_tt.sum() - k_tt.diagonal().sum()) / (m * (m - 1))
    return within_s + within_t - 2.0 * k_st.mean()


def smoothing(f_s: torch.Tensor, f_t: torch.Tensor, y_s: torch.Tensor, y_t: torch.Tensor,
              bandwidths) -> torch.Tensor:
    """Cross-domain smoothness: 1/2 sum_ij k(f_s_i, f_t_j) (y_s_i - y_t_j)^2.

    Equals 1/2 y^T L y for y = (y_s, y_t) and the Laplacian L of the bipartite source-target
    graph with edge weights k: similar-looking images across domains are pushed to similar outputs.
    """
    weights = gaussian_kernel(f_s, f_t, bandwidths)  # (n, m)
    return 0.5 * (weights * (y_s[:, None] - y_t[None, :]).pow(2)).sum()


def bandwidths(f_s: torch.Tensor, f_t: torch.Tensor, rule: str, scales: Sequence[float]
               ) -> list[torch.Tensor]:
    """Kernel bandwidths: `feature_dim` (the seed's d) or `median` (heuristic), times each scale."""
    base = (torch.tensor(float(f_s.shape[1]), device=f_s.device) if rule == "feature_dim"
            else median_bandwidth(f_s, f_t))
    return [base * s for s in scales]
