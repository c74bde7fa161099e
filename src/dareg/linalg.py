"""An SVD whose gradient stays finite where singular values repeat or vanish.

torch.linalg.svd's backward divides by s_j^2 - s_i^2 and, for a thin SVD of a rectangular
matrix, by s_i: it is inf or NaN wherever two singular values coincide (RSD's case when the
source and target subspaces agree: all cosines of the principal angles are 1) or one is zero
(RSD's principal bases of rank-deficient batch features, such as a narrow ReLU network with dead
units gives). Here those pairs and directions are left out of the backward (their singular
vectors are not unique, so no direction of change is preferred); elsewhere the gradient is
torch's (tested against it, and with gradcheck).
"""
from __future__ import annotations

import torch


class _ThinSVD(torch.autograd.Function):
    """A = U diag(s) V^T, A (m, n), U (m, k), V (n, k), k = min(m, n). Backward (Townsend 2016,
    "Differentiating the singular value decomposition", real case):

        dA = U [ (F o (J - J^T)) S + diag(ds) + S (F o (K - K^T)) ] V^T
             + (I - U U^T) dU S^-1 V^T + U S^-1 dV^T (I - V V^T),
        J = U^T dU, K = V^T dV, F_ij = 1 / (s_j^2 - s_i^2) for i != j;

    F_ij is 0 where |s_j^2 - s_i^2| <= eps * max(s)^2 (repeated values) and 1 / s_i is 0 where
    s_i <= eps * max(s) (null directions). The last two terms vanish for a square A.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, eps: float):
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        v = vh.mT
        ctx.save_for_backward(u, s, v)
        ctx.eps = eps
        return u, s, v

    @staticmethod
    def backward(ctx, grad_u, grad_s, grad_v):
        u, s, v = ctx.saved_tensors
        top = s.max().clamp_min(torch.finfo(s.dtype).tiny)
        gap = s[None, :] ** 2 - s[:, None] ** 2  # (k, k): s_j^2 - s_i^2
        keep = gap.abs() > ctx.eps * top**2
        f = torch.where(keep, 1.0 / torch.where(keep, gap, torch.ones_like(gap)),
                        torch.zeros_like(gap))
        live = s > ctx.eps * top
        s_inv = torch.where(live, 1.0 / torch.where(live, s, torch.ones_like(s)), torch.zeros_like(s))
        inner = torch.diag_embed(grad_s if grad_s is not None else torch.zeros_like(s))
        grad = torch.zeros(u.shape[0], v.shape[0], dtype=u.dtype, device=u.device)
        if grad_u is not None:
            j = u.mT @ grad_u
            inner = inner + (f * (j - j.mT)) * s[None, :]
            if u.shape[0] > u.shape[1]:
                grad = grad + (grad_u - u @ j) * s_inv[None, :] @ v.mT
        if grad_v is not None:
            k = v.mT @ grad_v
            inner = inner + s[:, None] * (f * (k - k.mT))
            if v.shape[0] > v.shape[1]:
                grad = grad + u @ (s_inv[:, None] * (grad_v - v @ k).mT)
        return u @ inner @ v.mT + grad, None


def thin_svd(a: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, s, V) with a = U diag(s) V^T (note V, not V^T), the thin SVD of a matrix a (m, n);
    differentiable with a finite gradient even where singular values repeat or are zero."""
    if a.ndim != 2:
        raise ValueError(f"thin_svd needs a matrix, got shape {tuple(a.shape)}")
    return _ThinSVD.apply(a, eps)


def square_svd(a: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """thin_svd of a square matrix a (k, k) (RSD's U_s^T U_t)."""
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"square_svd needs a square matrix, got shape {tuple(a.shape)}")
    return thin_svd(a, eps)


class _GramPinv(torch.autograd.Function):
    """B = (a^T a)_k^+ = V_k diag(1 / s_k^2) V_k^T, the pseudo-inverse of the Gram matrix
    G = a^T a (p, p) keeping its k largest eigenvalues, from the thin SVD of a (n, p) alone:
    O(n^2 p), never an SVD of G (DARE-GRAM's; a 32 x 513 batch is 13 times faster).

    Backward: the Moore-Penrose derivative at fixed rank, as torch.linalg.pinv differentiates
    (what DARE-GRAM's official code trains with), with P = G B = V_k V_k^T:
        dB = -B dG B + B^2 dG (I - P) + (I - P) dG B^2,
    so for W = dL/dB, S = dL/dG = -B W B + B^2 W (I - P) + (I - P) W B^2 and dL/da = a (S + S^T).
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, k: int):
        _, s, vh = torch.linalg.svd(a, full_matrices=False)
        v, inverse = vh[:k].mT, s[:k].pow(-2)  # (p, k), (k,)
        ctx.save_for_backward(a, v, inverse)
        return (v * inverse) @ v.mT

    @staticmethod
    def backward(ctx, w: torch.Tensor):
        a, v, inv = ctx.saved_tensors
        wv, vw = w @ v, v.mT @ w  # (p, k), (k, p)
        m = v.mT @ wv  # (k, k): V^T W V
        inv2 = inv.pow(2)
        s = (-(v @ (inv[:, None] * m * inv[None, :]) @ v.mT)
             + v @ (inv2[:, None] * (vw - m @ v.mT))  # B^2 W (I - P)
             + ((wv - v @ m) * inv2[None, :]) @ v.mT)  # (I - P) W B^2
        return a @ (s + s.mT), None


def gram_pinv(a: torch.Tensor, k: int) -> torch.Tensor:
    """(a^T a)^+ keeping the k largest eigenvalues, differentiable as torch.linalg.pinv at
    fixed rank (_GramPinv); a (n, p), k <= min(n, p)."""
    if a.ndim != 2 or not 1 <= k <= min(a.shape):
        raise ValueError(f"gram_pinv needs a matrix and 1 <= k <= {min(a.shape)}, got "
                         f"{tuple(a.shape)} and k = {k}")
    return _GramPinv.apply(a, k)
