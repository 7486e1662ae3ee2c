"""A compact sparse checkpoint: only the kept values and their positions, in one safetensors file.

Each tensor is stored the cheapest of three ways: dense; kept values + a bitmask (N/8 bytes of
positions); or kept values + the gaps between kept positions as LEB128 varints (1 byte per gap under
128, 2 under 16384, ...), which wins at high sparsity. Shapes, dtypes, encodings and any user metadata
go into the safetensors header as JSON, so the file is self-describing and needs no pickle to read.

The information-theoretic floor for the positions of a tensor with N entries at density d is
N * H(d) / 8 bytes (H the binary entropy); ``entropy_bytes`` gives it so exports can report how close
they come.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from harp_prune.errors import HarpError

FORMAT = "harp-sparse-v1"


def varint_encode(values: np.ndarray) -> np.ndarray:
    """LEB128: 7 bits per byte, high bit set on every byte but an integer's last."""
    values = values.astype(np.uint64)
    nbytes = np.ones(len(values), dtype=np.int64)
    rest = values >> np.uint64(7)
    while np.any(rest):
        nbytes += rest > 0
        rest >>= np.uint64(7)
    starts = np.cumsum(nbytes) - nbytes
    out = np.zeros(int(nbytes.sum()), dtype=np.uint8)
    for k in range(int(nbytes.max(initial=0))):
        has = nbytes > k
        byte = (values[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (nbytes[has] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[has] + k] = (byte | more).astype(np.uint8)
    return out


def varint_decode(data: np.ndarray) -> np.ndarray:
    """Inverse of :func:`varint_encode`."""
    if data.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends = (data & 0x80) == 0
    element = np.concatenate(([0], np.cumsum(ends)[:-1]))
    starts = np.flatnonzero(np.concatenate(([True], ends[:-1])))
    position = np.arange(data.size) - starts[element]
    parts = (data.astype(np.int64) & 0x7F) << (7 * position)
    return np.add.reduceat(parts, starts)


def entropy_bytes(numel: int, kept: int) -> float:
    """N * H(kept / N) / 8: the fewest bytes any code can spend on the positions (on average)."""
    if kept in (0, numel):
        return 0.0
    d = kept / numel
    return numel * -(d * math.log2(d) + (1 - d) * math.log2(1 - d)) / 8


@dataclass
class SparseSizes:
    """Bytes of the sparse file's payload against the dense float32 tensors and the entropy limit."""

    dense: int  # all tensors stored dense
    stored: int  # payload actually written (values + positions + dense tensors)
    values: int  # kept values of the sparse-encoded tensors
    positions: int  # bitmasks and varint gaps
    entropy_positions: float  # the entropy limit for the same positions

    @property
    def entropy_total(self) -> float:
        return self.stored - self.positions + self.entropy_positions

    def as_dict(self) -> dict[str, float]:
        return {"dense_bytes": self.dense, "stored_bytes": self.stored, "value_bytes": self.values,
                "position_bytes": self.positions, "entropy_position_bytes": self.entropy_positions,
                "entropy_total_bytes": self.entropy_total, "ratio_to_dense": self.stored / self.dense,
                "ratio_to_entropy": self.stored / max(self.entropy_total, 1.0)}


def _encode(name: str, array: np.ndarray, arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], int, int, float]:
    """Store ``array`` under ``name`` the cheapest way; returns (header entry, value bytes, position bytes, H)."""
    flat = array.reshape(-1)
    entry: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    if not np.issubdtype(array.dtype, np.floating) or flat.size < 64:
        arrays[name] = np.ascontiguousarray(array)
        return {**entry, "encoding": "dense"}, 0, 0, 0.0
    kept = np.flatnonzero(flat)
    values = flat[kept]
    bitmask_bytes = math.ceil(flat.size / 8)
    gaps = varint_encode(np.diff(kept, prepend=-1) - 1)
    dense_bytes = flat.nbytes
    best = min(dense_bytes, values.nbytes + bitmask_bytes, values.nbytes + gaps.nbytes)
    if best == dense_bytes:
        arrays[name] = np.ascontiguousarray(array)
        return {**entry, "encoding": "dense"}, 0, 0, 0.0
    arrays[f"{name}::values"] = np.ascontiguousarray(values)
    if best == values.nbytes + bitmask_bytes:
        positions = np.packbits(flat != 0)
        entry["encoding"] = "bitmask"
    else:
        positions = gaps
        entry["encoding"] = "varint-gaps"
    arrays[f"{name}::positions"] = positions
    return entry, values.nbytes, positions.nbytes, entropy_bytes(flat.size, kept.size)


def save_sparse(state_dict: dict[str, torch.Tensor], path: str | Path,
                metadata: dict[str, Any] | None = None) -> SparseSizes:
    """Write ``state_dict`` (zeros where pruned) as a compact safetensors file; returns the sizes."""
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {}
    dense = values = positions = 0
    entropy = 0.0
    for name, tensor in state_dict.items():
        if "::" in name:
            raise HarpError(f"tensor name '{name}' contains '::', which the sparse format reserves")
        array = tensor.detach().cpu().contiguous().numpy()
        dense += array.nbytes
        header[name], v, p, h = _encode(name, array, arrays)
        values, positions, entropy = values + v, positions + p, entropy + h
    stored = sum(a.nbytes for a in arrays.values())
    info = {"format": FORMAT, "tensors": header, "metadata": metadata or {}}
    save_file(arrays, str(path), metadata={"harp": json.dumps(info)})
    return SparseSizes(dense, stored, values, positions, entropy)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON header of a sparse checkpoint (format, tensors, user metadata)."""
    with safe_open(str(path), framework="numpy") as handle:
        raw = (handle.metadata() or {}).get("harp")
    if raw is None:
        raise HarpError(f"{path} is not a harp sparse checkpoint (no 'harp' metadata); export it with "
                        "'harp export --format sparse'")
    info = json.loads(raw)
    if info.get("format") != FORMAT:
        raise HarpError(f"{path} has format {info.get('format')!r}, this version reads {FORMAT}")
    return info


def load_sparse(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Rebuild the dense state dict (pruned entries zero) and the user metadata of a sparse checkpoint."""
    info = read_metadata(path)
    arrays = load_file(str(path))
    state: dict[str, torch.Tensor] = {}
    for name, entry in info["tensors"].items():
        shape, dtype = tuple(entry["shape"]), np.dtype(entry["dtype"])
        if entry["encoding"] == "dense":
            array = arrays[name].reshape(shape)
        else:
            numel = math.prod(shape)
            flat = np.zeros(numel, dtype=dtype)
            positions = arrays[f"{name}::positions"]
            if entry["encoding"] == "bitmask":
                kept = np.flatnonzero(np.unpackbits(positions, count=numel))
            else:
                kept = np.cumsum(varint_decode(positions) + 1) - 1
            flat[kept] = arrays[f"{name}::values"]
            array = flat.reshape(shape)
        state[name] = torch.from_numpy(np.array(array, copy=True))
    return state, info["metadata"]
