"""The sparse checkpoint format: varint gaps, the cheaper position code, sizes against the entropy limit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harp_prune.export.sparse import (
    entropy_bytes,
    load_sparse,
    read_metadata,
    save_sparse,
    varint_decode,
    varint_encode,
)


def test_varints_round_trip_and_use_one_byte_below_128():
    values = np.array([0, 1, 127, 128, 300, 16383, 16384, 2**40], dtype=np.int64)
    encoded = varint_encode(values)
    assert np.array_equal(varint_decode(encoded), values)
    assert varint_encode(np.array([5, 127])).nbytes == 2 and varint_encode(np.array([128])).nbytes == 2


def _state(density: float, numel: int = 200_000) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(numel, generator=generator) * (torch.rand(numel, generator=generator) < density)
    return {"w": weight.view(400, -1), "bias": torch.randn(7), "steps": torch.tensor(3)}


@pytest.mark.parametrize("density, encoding", [(0.5, "bitmask"), (0.2, "bitmask"), (0.1, "varint-gaps"),
                                               (0.001, "varint-gaps"), (0.99, "dense")])
def test_round_trip_and_cheaper_encoding(tmp_path, density, encoding):
    state = _state(density)
    sizes = save_sparse(state, tmp_path / "s.safetensors", {"note": "x"})
    loaded, meta = load_sparse(tmp_path / "s.safetensors")
    assert meta == {"note": "x"}
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor) and loaded[key].dtype == tensor.dtype
    assert read_metadata(tmp_path / "s.safetensors")["tensors"]["w"]["encoding"] == encoding
    if encoding != "dense":
        assert sizes.stored < sizes.dense
        assert sizes.positions >= sizes.entropy_positions  # nothing beats the entropy limit
        assert sizes.positions < 2.0 * sizes.entropy_positions + 16


def test_entropy_limit():
    assert entropy_bytes(800, 400) == pytest.approx(100.0)
    assert entropy_bytes(10, 0) == 0.0 and entropy_bytes(10, 10) == 0.0
    d = 0.01
    assert entropy_bytes(10**6, 10**4) == pytest.approx(10**6 * -(d * math.log2(d) + (1 - d) * math.log2(1 - d)) / 8)
