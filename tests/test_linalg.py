"""square_svd: torch's SVD gradient where singular values are distinct, a finite one where they repeat."""
import torch

from dareg.linalg import square_svd


def loss_of(svd, a, w):
    u, s, v = svd(a)
    return (u.abs() * w[0]).sum() + (s * w[1][0]).sum() + (v.abs() * w[2]).sum()


def torch_svd(a):
    u, s, vh = torch.linalg.svd(a)
    return u, s, vh.mT


def test_gradient_equals_torchs_where_singular_values_are_distinct():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(loss_of(square_svd, a, w), a)[0]
    reference = torch.autograd.grad(loss_of(torch_svd, a, w), a)[0]
    assert torch.allclose(ours, reference, atol=1e-10)
    assert torch.autograd.gradcheck(lambda x: loss_of(square_svd, x, w), (a,))


def test_gradient_is_finite_for_an_orthogonal_matrix_where_torchs_is_not():
    """All singular values 1 (RSD when the two subspaces agree)."""
    q = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(1),
                                    dtype=torch.float64))[0]
    w = torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = q.clone().requires_grad_()
    assert torch.isfinite(torch.autograd.grad(loss_of(square_svd, a, w), a)[0]).all()
    b = q.clone().requires_grad_()
    assert not torch.isfinite(torch.autograd.grad(loss_of(torch_svd, b, w), b)[0]).all()


def test_factors_rebuild_the_matrix():
    a = torch.randn(4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    u, s, v = square_svd(a)
    assert torch.allclose(u @ torch.diag(s) @ v.T, a)
