"""square_svd: torch's SVD gradient where singular values are distinct, a finite one where they repeat."""
import torch

from dareg.linalg import square_svd, thin_svd


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


def test_thin_svd_gradient_equals_torchs_for_tall_and_wide_matrices():
    g = torch.Generator().manual_seed(4)
    for shape in [(7, 4), (4, 7)]:
        a = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
        k = min(shape)
        w = [torch.randn(shape[0], k, generator=g, dtype=torch.float64),
             torch.randn(1, k, generator=g, dtype=torch.float64),
             torch.randn(shape[1], k, generator=g, dtype=torch.float64)]

        def ours(x):
            return loss_of(thin_svd, x, w)

        def theirs(x):
            u, s, vh = torch.linalg.svd(x, full_matrices=False)
            return loss_of(lambda _: (u, s, vh.mT), x, w)

        grad = torch.autograd.grad(ours(a), a)[0]
        assert torch.allclose(grad, torch.autograd.grad(theirs(a), a)[0], atol=1e-10), shape
        assert torch.autograd.gradcheck(ours, (a,))


def test_thin_svd_gradient_is_finite_for_rank_deficient_features_where_torchs_is_not():
    """Batch features with dead units (zero columns): repeated zero singular values."""
    g = torch.Generator().manual_seed(5)
    f = torch.randn(8, 16, generator=g, dtype=torch.float64)
    f[:, 5:] = 0.0  # 11 dead units: rank 5
    w = torch.randn(16, 8, generator=g, dtype=torch.float64)

    def top_basis_loss(svd, x):
        return (svd(x.T)[0][:, :6].abs() * w[:, :6]).sum()

    def torch_thin(x):
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        return u, s, vh.mT

    a = f.clone().requires_grad_()
    assert torch.isfinite(torch.autograd.grad(top_basis_loss(thin_svd, a), a)[0]).all()
    b = f.clone().requires_grad_()
    assert not torch.isfinite(torch.autograd.grad(top_basis_loss(torch_thin, b), b)[0]).all()
