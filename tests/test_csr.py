"""CSR-backed Linear layers compute what the dense layer computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harp_prune.export import CSRLinear, sparsify_linears


def _sparse_linear(density: float, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Linear(300, 70, bias=bias)
    with torch.no_grad():
        layer.weight.mul_((torch.rand_like(layer.weight) < density).float())
    return layer


@pytest.mark.parametrize("density", [0.001, 0.01, 0.1, 0.5])
@pytest.mark.parametrize("bias", [True, False])
def test_csr_linear_equals_dense(density, bias):
    dense = _sparse_linear(density, bias)
    csr = CSRLinear(dense)
    x = torch.randn(17, 300)
    with torch.no_grad():
        torch.testing.assert_close(csr(x), dense(x), rtol=1e-5, atol=1e-5)
        x3 = torch.randn(2, 5, 300)  # leading dimensions are kept
        torch.testing.assert_close(csr(x3), dense(x3), rtol=1e-5, atol=1e-5)
    assert csr.weight.layout == torch.sparse_csr
    assert csr.weight.values().numel() == torch.count_nonzero(dense.weight)


def test_sparsify_converts_only_sparse_linears():
    model = nn.Sequential(nn.Flatten(), _sparse_linear(0.05), nn.ReLU(), nn.Linear(70, 10))
    x = torch.randn(8, 300)
    with torch.no_grad():
        expected = model(x)
    assert sparsify_linears(model, max_density=0.1) == ["1"]
    assert isinstance(model[1], CSRLinear) and isinstance(model[3], nn.Linear)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
