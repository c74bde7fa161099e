"""MMD and smoothing: brute-force references and the properties the docstrings promise."""
import itertools

import pytest
import torch

from dareg import losses



@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons against the references need double precision, in this module only."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def brute_kernel(a, b, bw):
    return torch.tensor([[float(torch.exp(-((x - y) ** 2).sum() / bw)) for y in b] for x in a])


def brute_mmd(s, t, bw, unbiased):
    kss, ktt, kst = brute_kernel(s, s, bw), brute_kernel(t, t, bw), brute_kernel(s, t, bw)
    if not unbiased:
        return kss.mean() + ktt.mean() - 2 * kst.mean()
    n, m = len(s), len(t)
    off = lambda k, n: sum(k[i, j] for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    return off(kss, n) + off(ktt, m) - 2 * kst.mean()


@pytest.fixture
def samples():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=g), torch.randn(6, 5, generator=g)


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_matches_brute_force(samples, unbiased):
    """The vectorized MMD equals the definition summed pair by pair."""
    s, t = samples
    assert float(losses.mmd(s, t, [3.0], unbiased)) == pytest.approx(float(brute_mmd(s, t, 3.0, unbiased)))


def test_multi_kernel_is_mean_of_single_kernels(samples):
    s, t = samples
    multi = losses.mmd(s, t, [1.0, 4.0])
    singles = (losses.mmd(s, t, [1.0]) + losses.mmd(s, t, [4.0])) / 2
    assert float(multi) == pytest.approx(float(singles))


def test_biased_mmd_is_zero_for_identical_samples(samples):
    s, _ = samples
    assert float(losses.mmd(s, s.clone(), [2.0], unbiased=False)) == pytest.approx(0.0, abs=1e-12)


def test_unbiased_mmd_near_zero_for_same_distribution():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(400, 3, generator=g), torch.randn(400, 3, generator=g)
    assert abs(float(losses.mmd(a, b, [3.0]))) < 0.01


def test_mmd_is_symmetric(samples):
    s, t = samples
    assert float(losses.mmd(s, t, [2.0])) == pytest.approx(float(losses.mmd(t, s, [2.0])))


def test_mmd_grows_with_mean_shift_and_with_variance_only():
    g = torch.Generator().manual_seed(2)
    base, other = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
    values = [float(losses.mmd(base, other + shift, [8.0])) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[-1] > 0.1
    spread = [float(losses.mmd(base, other * scale, [8.0])) for scale in (1.0, 1.5, 2.5)]
    assert spread == sorted(spread) and spread[-1] > 0.05


def test_smoothing_matches_brute_force_and_laplacian(samples):
    """1/2 sum_ij k_ij (y_i - y_j)^2 == 1/2 y^T L y on the bipartite source-target graph."""
    s, t = samples
    g = torch.Generator().manual_seed(3)
    y_s, y_t = torch.rand(8, generator=g), torch.rand(6, generator=g)
    value = float(losses.smoothing(s, t, y_s, y_t, [2.0]))
    k = brute_kernel(s, t, 2.0)
    brute = 0.5 * sum(k[i, j] * (y_s[i] - y_t[j]) ** 2 for i in range(8) for j in range(6))
    adjacency = torch.zeros(14, 14)
    adjacency[:8, 8:], adjacency[8:, :8] = k, k.T
    laplacian = torch.diag(adjacency.sum(1)) - adjacency
    y = torch.cat([y_s, y_t])
    assert value == pytest.approx(float(brute))
    assert value == pytest.approx(float(0.5 * y @ laplacian @ y))


def test_smoothing_is_zero_for_equal_predictions(samples):
    s, t = samples
    assert float(losses.smoothing(s, t, torch.full((8,), 0.3), torch.full((6,), 0.3), [1.0])) == 0.0


def test_gradients_are_finite_at_zero_distance():
    """Duplicated features (distance 0) must not give NaN gradients, as torch.cdist can."""
    f = torch.randn(4, 3, requires_grad=True)
    loss = losses.mmd(f, torch.cat([f[:2], f[:2]]), [1.0]) + losses.smoothing(
        f, f, torch.rand(4), torch.rand(4), [1.0])
    loss.backward()
    assert torch.isfinite(f.grad).all()


def test_median_bandwidth_is_median_pairwise_squared_distance():
    s, t = torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]])
    # squared distances off the diagonal: 1, 9, 4 (each twice) -> median 4
    assert float(losses.median_bandwidth(s, t)) == pytest.approx(4.0)
