"""ONNX export (zeroed or slimmed model) with a check under onnxruntime.

Uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs onnxscript, which is
not a dependency. The batch dimension is dynamic.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harp_prune.errors import HarpError


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str | Path, opset: int = 17) -> None:
    """Write ``model`` (plain, in eval mode) as ONNX for inputs (N, *input_shape) in [0, 1].

    The model must carry no masks (``slim_model`` or ``zeroed_model`` first, or use ``export_model``); the
    graph's input is ``input`` and its output ``logits``, with a dynamic batch dimension. The model is put in
    eval mode."""
    model = model.eval()
    example = torch.rand(2, *input_shape)
    with warnings.catch_warnings():  # the legacy exporter's deprecation notices; it is the one that needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          dynamo=False)


def onnx_max_error(model: nn.Module, path: str | Path, inputs: torch.Tensor) -> float:
    """Largest |torch - onnxruntime| output difference on ``inputs``: the export check."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise HarpError("checking an ONNX export needs onnxruntime; pip install 'harp-prune[onnx]'") from exc
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": inputs.detach().cpu().numpy().astype(np.float32)})[0]
    with torch.no_grad():
        want = model.eval()(inputs).cpu().numpy()
    return float(np.abs(got - want).max())
