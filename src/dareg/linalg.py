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
