"""An SVD of square matrices whose gradient stays finite where singular values repeat.

torch.linalg.svd's backward divides by s_j^2 - s_i^2, so it is inf or NaN wherever two singular
values coincide: exactly the case RSD meets when the source and target subspaces agree (all
cosines of the principal angles are 1). Here those pairs are left out of the backward (their
singular vectors are not unique, so no direction of change is preferred); elsewhere the gradient
is torch's (tested against it with gradcheck).
"""
from __future__ import annotations

import torch


class _SquareSVD(torch.autograd.Function):
    """A = U diag(s) V^T for a square A (k, k). Backward (Townsend 2016, "Differentiating the
    singular value decomposition", real square case):

        dA = U [ (F o (J - J^T)) S + diag(ds) + S (F o (K - K^T)) ] V^T,
        J = U^T dU, K = V^T dV, F_ij = 1 / (s_j^2 - s_i^2) for i != j, and 0 where
        |s_j^2 - s_i^2| < eps (repeated values) or i = j.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, eps: float):
        u, s, vh = torch.linalg.svd(a)
        v = vh.mT
        ctx.save_for_backward(u, s, v)
        ctx.eps = eps
        return u, s, v

    @staticmethod
    def backward(ctx, grad_u, grad_s, grad_v):
        u, s, v = ctx.saved_tensors
        gap = s[None, :] ** 2 - s[:, None] ** 2  # (k, k): s_j^2 - s_i^2
        keep = gap.abs() > ctx.eps
        f = torch.where(keep, 1.0 / torch.where(keep, gap, torch.ones_like(gap)),
                        torch.zeros_like(gap))
        inner = torch.diag_embed(grad_s if grad_s is not None else torch.zeros_like(s))
        if grad_u is not None:
            j = u.mT @ grad_u
            inner = inner + (f * (j - j.mT)) * s[None, :]
        if grad_v is not None:
            k = v.mT @ grad_v
            inner = inner + s[:, None] * (f * (k - k.mT))
        return u @ inner @ v.mT, None


def square_svd(a: torch.Tensor, eps: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, s, V) with a = U diag(s) V^T (note V, not V^T), for a square matrix a (k, k);
    differentiable with a finite gradient even where singular values repeat."""
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"square_svd needs a square matrix, got shape {tuple(a.shape)}")
    return _SquareSVD.apply(a, eps)
