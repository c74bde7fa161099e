"""Loss terms of the adaptation regimes, registered by name: a regime's `weights` name the terms
that enter its loss, and the training loop asks this registry for them.

Every term is a pure function  term(f_s, f_t, y_s, y_t, ctx) -> scalar tensor  of the batch's
source and target features f_s (n, d), f_t (m, d) and the main head's predictions y_s (n, K),
y_t (m, K) (K factors, with gradient), with `ctx` (TermContext) holding the loss params, the
training progress and the model's adaptation modules. Names follow
thuml/Transfer-Learning-Library (x_s, x_t, f_s, f_t).
The supervised loss is the head's (dareg.heads), weighed by `supervised`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dareg.linalg import gram_pinv, square_svd, thin_svd
from dareg.params import Losses


@dataclass(frozen=True)
class TermContext:
    """What a term may read besides the batch: params, training progress in [0, 1] (DANN's
    ramp), the global optimizer step, 0-based (DD's warm start), and the adaptation modules
    built on the model (DANN's domain discriminator, DD's adversarial regressor)."""

    cfg: Losses
    progress: float = 0.0
    modules: Mapping[str, nn.Module] = field(default_factory=dict)
    step: int = 0


@dataclass(frozen=True)
class Term:
    fn: Callable[..., torch.Tensor]
    # adaptation modules the term needs on the model: name -> builder(feature_dim, cfg, outputs)
    modules: Mapping[str, Callable[[int, Losses, int], nn.Module]] = field(default_factory=dict)


TERMS: dict[str, Term] = {}


def register(name: str, modules: Mapping[str, Callable] | None = None):
    """Decorator: make `fn` the loss term `name` (what a regime's weights refer to), with the
    builders of the adaptation modules it reads from ctx.modules."""
    def add(fn):
        TERMS[name] = Term(fn, dict(modules or {}))
        return fn
    return add


# ----- kernels -----------------------------------------------------------------------------------

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


def bandwidths(f_s: torch.Tensor, f_t: torch.Tensor, rule: str, scales: Sequence[float]
               ) -> list[torch.Tensor]:
    """Kernel bandwidths: `feature_dim` (d, as in the original codebase) or `median`
    (heuristic), times each scale."""
    base = (torch.tensor(float(f_s.shape[1]), device=f_s.device) if rule == "feature_dim"
            else median_bandwidth(f_s, f_t))
    return [base * s for s in scales]


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, bandwidths: Sequence[float] | torch.Tensor
                    ) -> torch.Tensor:
    """k(a_i, b_j) = mean_s exp(-||a_i - b_j||^2 / bandwidth_s), an (n, m) matrix.

    One bandwidth d (the feature size) is the original codebase's kernel; several make a multi-kernel one.
    """
    d2 = squared_distances(a, b)
    return torch.stack([torch.exp(-d2 / bw) for bw in bandwidths]).mean(0)


# ----- MMD and smoothing (the original codebase's terms) ------------------------------------------

def mmd(f_s: torch.Tensor, f_t: torch.Tensor, bandwidths, unbiased: bool = True) -> torch.Tensor:
    """Squared maximum mean discrepancy (Gretton et al. 2012) between f_s (n, d) and f_t (m, d).

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


def check_predictions(y_s: torch.Tensor, y_t: torch.Tensor) -> None:
    """Refuse predictions that are not (n, K) and (m, K) with one K (a head's column per factor)."""
    if y_s.ndim != 2 or y_t.ndim != 2 or y_s.shape[1] != y_t.shape[1]:
        raise ValueError(f"loss term: predictions y_s {tuple(y_s.shape)} and y_t "
                         f"{tuple(y_t.shape)} must be (n, K) and (m, K), one column per factor")


def smoothing(f_s: torch.Tensor, f_t: torch.Tensor, y_s: torch.Tensor, y_t: torch.Tensor,
              bandwidths, form: str = "graph") -> torch.Tensor:
    """Cross-domain smoothness of the predictions y_s (n, K), y_t (m, K) over the source-target
    kernel graph:

    graph (default): S = 1/(2 n m) sum_ij sg[k(f_s_i, f_t_j)] ||y_s_i - y_t_j||^2, sg =
          stop-gradient: label propagation on a fixed graph (the predictions move, the features
          are not pushed apart to cut edges), and a mean, so its weight means the same at any
          batch mix.
    seed: S = 1/2 sum_ij k(f_s_i, f_t_j) ||y_s_i - y_t_j||^2 with the gradient through k, as the
          first seed: lowered also by pushing source and target features apart (against MMD).
    Both equal c * 1/2 sum_k y_k^T L y_k over the factors' columns y_k = (y_s[:, k], y_t[:, k])
    and the Laplacian L of the bipartite graph with edge weights k (c = 1/(n m) for graph, 1 for
    seed). For K = 1 the squared norm is the seed's (y_s_i - y_t_j)^2.
    """
    check_predictions(y_s, y_t)
    weights = gaussian_kernel(f_s, f_t, bandwidths)  # (n, m)
    gaps = (y_s[:, None, :] - y_t[None, :, :]).pow(2).sum(2)  # (n, m): ||y_s_i - y_t_j||^2
    if form == "seed":
        return 0.5 * (weights * gaps).sum()
    return 0.5 * (weights.detach() * gaps).mean()


@register("mmd")
def mmd_term(f_s, f_t, y_s, y_t, ctx: TermContext) -> torch.Tensor:
    """`mmd` above with the kernel of `losses` (bandwidth rule, scales, estimator)."""
    bws = bandwidths(f_s, f_t, ctx.cfg.bandwidth, ctx.cfg.scales)
    return mmd(f_s, f_t, bws, ctx.cfg.mmd_estimator == "unbiased")


@register("smoothing")
def smoothing_term(f_s, f_t, y_s, y_t, ctx: TermContext) -> torch.Tensor:
    """`smoothing` above with the kernel of `losses` and `losses.smoothing_form`."""
    bws = bandwidths(f_s, f_t, ctx.cfg.bandwidth, ctx.cfg.scales)
    return smoothing(f_s, f_t, y_s, y_t, bws, ctx.cfg.smoothing_form)


# ----- Deep CORAL --------------------------------------------------------------------------------

def covariance(f: torch.Tensor) -> torch.Tensor:
    """C = (f - mean)^T (f - mean) / (n - 1), (d, d)."""
    centred = f - f.mean(0, keepdim=True)
    return centred.T @ centred / (len(f) - 1)


@register("coral")
def coral(f_s, f_t, y_s=None, y_t=None, ctx=None) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko, ECCV workshops 2016): ||C_s - C_t||_F^2 / (4 d^2), C the feature
    covariance. Zero for equal covariances; blind to a shift of the means."""
    d = f_s.shape[1]
    return (covariance(f_s) - covariance(f_t)).pow(2).sum() / (4 * d * d)


# ----- RSD ---------------------------------------------------------------------------------------

def principal_bases(f_s: torch.Tensor, f_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """U_s, U_t (d, k): the first k = min(n, m, d) left singular vectors of f_s^T and f_t^T, so
    the two subspaces have one dimension (RSD's batches are equal; here they may not be).
    dareg.linalg.thin_svd: rank-deficient features (dead ReLU units) keep a finite gradient."""
    k = min(len(f_s), len(f_t), f_s.shape[1])
    u_s = thin_svd(f_s.T)[0][:, :k]
    u_t = thin_svd(f_t.T)[0][:, :k]
    return u_s, u_t


@register("rsd")
def rsd(f_s, f_t, y_s=None, y_t=None, ctx: TermContext | None = None) -> torch.Tensor:
    """Representation Subspace Distance (Chen, Wang, Wang, Long, ICML 2021, "Representation
    Subspace Distance for Domain Adaptation Regression"):

        U_s^T U_t = P_s diag(cos theta) P_t^T            (SVD; theta: the principal angles)
        RSD = sum_i sin(theta_i) + tradeoff * || |P_s| - |P_t| ||_F

    the second part being the paper's base-mismatch penalty (`losses.rsd_tradeoff`, 0.1 in the
    thuml reference). Aligns the subspaces' orientation and leaves the features' scale alone,
    which regression needs: RSD(c f_s, f_t) = RSD(f_s, f_t) for c > 0.
    """
    tradeoff = 0.1 if ctx is None else ctx.cfg.rsd_tradeoff
    u_s, u_t = principal_bases(f_s, f_t)
    p_s, cosines, p_t = square_svd(u_s.T @ u_t)
    sines = torch.sqrt((1.0 - cosines.pow(2)).clamp_min(1e-12))
    return sines.sum() + tradeoff * torch.linalg.matrix_norm(p_s.abs() - p_t.abs())


# ----- DARE-GRAM ---------------------------------------------------------------------------------

def gram_factor(f: torch.Tensor) -> torch.Tensor:
    """A / sqrt(n) with A = [1, f] (n, d + 1): G = A^T A / n, the Gram matrix of OLS on these
    features divided by the batch size (not in the paper, so that batches of different sizes
    compare), is its own Gram matrix. DARE-GRAM works from this factor's thin SVD, O(n^2 d),
    never an SVD of the (d + 1, d + 1) matrix G."""
    a = torch.cat([torch.ones(len(f), 1, dtype=f.dtype, device=f.device), f], 1)
    return a / math.sqrt(len(f))


def gram_eigenvalues(f: torch.Tensor) -> torch.Tensor:
    """The min(n, d + 1) largest eigenvalues of G (gram_factor), s^2 for the singular values s of
    its factor (G's others are 0); dareg.linalg.thin_svd keeps the gradient finite where values
    repeat or vanish."""
    return thin_svd(gram_factor(f))[1].pow(2)


def daregram_parts(f_s: torch.Tensor, f_t: torch.Tensor, threshold: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(angle, scale) of DARE-GRAM (Nejjar, Wang, Fink, CVPR 2023, arXiv 2303.13325):

        k    = the larger, over the two domains, of the official index (_leading): the last
               0-based position whose cumulative eigenvalue share is <= `threshold` (raised to
               the second share when that is above it), at most min(n, m, d + 1): G's rank can
               be no higher, and inverting a null direction would blow the gradient up (the
               paper's batches are equal, so its k stays within the rank)
        G^+  = the pseudo-inverse keeping exactly k values (dareg.linalg.gram_pinv: from the
               factor's SVD; differentiated as torch.linalg.pinv, as the official code is)
        angle = mean over the d + 1 columns j of 1 - cos(G_s^+[:, j], G_t^+[:, j])
        scale = || lambda_s[:k] - lambda_t[:k] ||_2 / k
    """
    lam_s, lam_t = gram_eigenvalues(f_s), gram_eigenvalues(f_t)
    k = min(max(_leading(lam_s, threshold), _leading(lam_t, threshold)),
            len(f_s), len(f_t), f_s.shape[1] + 1)
    inverses = [gram_pinv(gram_factor(f), k) for f in (f_s, f_t)]
    angle = (1.0 - F.cosine_similarity(*inverses, dim=0, eps=1e-8)).mean()
    scale = torch.linalg.vector_norm(lam_s[:k] - lam_t[:k]) / k
    return angle, scale


def _leading(eigenvalues: torch.Tensor, threshold: float) -> int:
    """How many leading values DARE-GRAM inverts (its official rule): the last 0-based index i
    with cumulative share s_i <= T, T = max(threshold, s_1); so at least 1, and never the values
    that take the share past T."""
    eigenvalues = eigenvalues.detach()
    share = eigenvalues.cumsum(0) / eigenvalues.sum().clamp_min(1e-30)
    if len(share) < 2:
        return 1
    top = max(threshold, float(share[1]))
    return int(torch.nonzero(share <= top).max())


@register("daregram_angle")
def daregram_angle(f_s, f_t, y_s=None, y_t=None, ctx: TermContext | None = None) -> torch.Tensor:
    """DARE-GRAM's angle term (daregram_parts); the paper weighs it alpha (0.05-0.5 in use)."""
    return daregram_parts(f_s, f_t, 0.99 if ctx is None else ctx.cfg.daregram_threshold)[0]


@register("daregram_scale")
def daregram_scale(f_s, f_t, y_s=None, y_t=None, ctx: TermContext | None = None) -> torch.Tensor:
    """DARE-GRAM's scale term (daregram_parts); the paper weighs it gamma (1e-3-3e-3 in use)."""
    return daregram_parts(f_s, f_t, 0.99 if ctx is None else ctx.cfg.daregram_threshold)[1]


def build_modules(terms: Sequence[str], feature_dim: int, cfg: Losses, outputs: int
                  ) -> dict[str, nn.Module]:
    """The adaptation modules the named terms need, freshly initialised, for features of
    `feature_dim` and a head with `outputs` factors."""
    builders = {name: build for t in terms for name, build in TERMS[t].modules.items()}
    return {name: build(feature_dim, cfg, outputs) for name, build in builders.items()}


from dareg import adversarial  # noqa: E402,F401  registers dann and dd (they need register above)
