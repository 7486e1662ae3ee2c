"""Models the project never saw, through every unstructured method and every export, checked by independent counts.

The CNN has nested containers, a depthwise and a grouped conv, a module registered under two names and run
twice, tied weights, a residual add and bias-free layers; the transformer has a conv patch embedding,
``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer`` and a linear head. Each is pruned by every method
that masks weights, and each export must give the masked model's outputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.export import export_model, load_slim, load_sparse, sparsify_linears, zeroed_model
from harp_prune.pruning import PRUNERS, Prunable, build_pruner, masked_layers, sparsity_report
from harp_prune.pruning.budget import budget_slack


class UnseenCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.ModuleDict({
            "depthwise": nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
            "grouped": nn.Conv2d(8, 8, 3, padding=1, groups=2),
            "pointwise": nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 1, bias=False)),
        })
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.alias = self.shared  # the same module under a second name
        self.tied_in = nn.Linear(32, 32, bias=False)
        self.tied_out = nn.Linear(32, 32)
        self.tied_out.weight = self.tied_in.weight
        self.head = nn.ModuleList([nn.Linear(32, 10)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.blocks["pointwise"](self.blocks["grouped"](self.blocks["depthwise"](x)))
        x = x + y  # residual
        x = torch.relu(self.shared(x))
        x = torch.relu(self.alias(x))  # second use of the shared conv
        x = F.adaptive_avg_pool2d(x, 2).flatten(1)
        x = torch.relu(self.tied_out(torch.relu(self.tied_in(x))))
        return self.head[0](x)


# Counted by hand: each Parameter once (the shared conv and the tied linear weight too).
CNN_PRUNABLE = {"stem.0": 72, "blocks.depthwise": 72, "blocks.grouped": 288, "blocks.pointwise.1": 64,
                "shared": 576, "tied_in": 1024, "head.0": 320}


class TinyViT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, 16, 4, stride=4)  # 12x12 -> 3x3 tokens
        self.position = nn.Parameter(torch.randn(1, 9, 16) * 0.02)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.encoder = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.position
        tokens = tokens + self.attention(tokens, tokens, tokens, need_weights=False)[0]
        tokens = self.encoder(tokens)
        return self.head(self.norm(tokens.mean(1)))


VIT_PRUNABLE = {"patch": 256, "attention.in_proj_weight": 768, "attention.out_proj": 256,
                "encoder.self_attn.in_proj_weight": 768, "encoder.self_attn.out_proj": 256, "encoder.linear1": 512,
                "encoder.linear2": 512, "head": 160}

WEIGHT_METHODS = sorted(name for name in PRUNERS if name != "harp-channel")
SPARSITY = 0.9


def _prune(model: nn.Module, method: str) -> nn.Module:
    """Attach, take a few optimiser steps where the method learns, fix the masks."""
    torch.manual_seed(0)
    pruner = build_pruner(method, SPARSITY)
    pruner.attach(model)
    if pruner.needs_training:
        optimizer = torch.optim.SGD(pruner.trainable_parameters(model), lr=0.1)
        for _ in range(3):
            x, y = torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,))
            loss = F.cross_entropy(model(x), y)
            penalty = pruner.penalty(0)
            (loss + penalty if penalty is not None else loss).backward()
            optimizer.step()
            optimizer.zero_grad()
    pruner.finalize()
    return model.eval()


def _check_counts(model: nn.Module, expected_sizes: dict[str, int], method: str) -> None:
    report = sparsity_report(model)
    assert {layer.name: layer.numel for layer in report.layers} == expected_sizes
    total = sum(expected_sizes.values())
    assert report.total == total
    # independent count: the non-zeros of the weights as the model reads them (every holder of a Parameter)
    reads = {}
    for _, module in model.named_modules(remove_duplicate=False):
        for attribute in ("weight", "in_proj_weight"):
            if module.__class__.__name__.startswith("Parametrized") and hasattr(module, attribute):
                value = getattr(module, attribute)
                if value is not None:
                    reads.setdefault(id(getattr(module.parametrizations, attribute).original), value)
    assert sum(int(torch.count_nonzero(v)) for v in reads.values()) == report.kept
    target = round((1 - SPARSITY) * total)
    if method in ("harp", "rates-only", "global-magnitude"):
        assert abs(report.kept - target) <= budget_slack(target)
    else:  # fixed layer budgets: exactly the per-layer counts they set
        assert report.kept == sum(layer.kept() for layer in masked_layers(model).values())
        assert abs(report.kept - target) <= len(expected_sizes)  # at most one weight of rounding per layer


def _check_exports(model: nn.Module, make: type[nn.Module], tmp_path, input_shape=(1, 12, 12)) -> dict[str, float]:
    x = torch.rand(6, *input_shape)
    with torch.no_grad():
        expected = model(x)
    differences = {}
    plain = zeroed_model(model)
    with torch.no_grad():
        differences["zeroed"] = float((plain(x) - expected).abs().max())
    export_model(model, "sparse", tmp_path / "m.sparse.safetensors", input_shape)
    state, _ = load_sparse(tmp_path / "m.sparse.safetensors")
    fresh = make().eval()
    fresh.load_state_dict(state)
    with torch.no_grad():
        differences["sparse"] = float((fresh(x) - expected).abs().max())
    report = export_model(model, "slim", tmp_path / "m.slim.pt", input_shape)
    assert report["slim_params"] <= report["dense_params"]
    slim = load_slim(tmp_path / "m.slim.pt", model=make())
    with torch.no_grad():
        differences["slim"] = float((slim(x) - expected).abs().max())
    report = export_model(model, "onnx", tmp_path / "m.onnx", input_shape)
    differences["onnx"] = report["onnx_max_error"]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    differences["onnx-vs-masked"] = float((torch.from_numpy(onnx_out) - expected).abs().max())
    csr = zeroed_model(model)
    assert sparsify_linears(csr, max_density=1.0)  # every Linear it can convert, as a CSR matrix
    with torch.no_grad():
        differences["csr"] = float((csr(x) - expected).abs().max())
    return differences


def _prune_check_export(make: type[nn.Module], sizes: dict[str, int], method: str, tmp_path) -> nn.Module:
    """Prune a fresh ``make()`` with ``method``, check its counts and that every export equals it."""
    torch.manual_seed(0)
    model = _prune(make(), method)
    assert list(masked_layers(model)) == list(sizes)
    _check_counts(model, sizes, method)
    for name, difference in _check_exports(model, make, tmp_path).items():
        assert difference < 1e-4, (name, difference)
    return model


@pytest.mark.parametrize("method", WEIGHT_METHODS)
def test_unseen_cnn_every_method_and_export(method, tmp_path):
    plain = zeroed_model(_prune_check_export(UnseenCNN, CNN_PRUNABLE, method, tmp_path))
    assert plain.tied_in.weight is plain.tied_out.weight and plain.shared is plain.alias


@pytest.mark.parametrize("method", WEIGHT_METHODS)
def test_tiny_vit_every_method_and_export(method, tmp_path):
    model = _prune_check_export(TinyViT, VIT_PRUNABLE, method, tmp_path)
    in_proj = model.encoder.self_attn.in_proj_weight  # attention reads it directly: masked there too
    assert int(torch.count_nonzero(in_proj)) == masked_layers(model)["encoder.self_attn.in_proj_weight"].kept()


def test_channel_pruning_refuses_attention_with_a_clear_message():
    with pytest.raises(HarpError, match="exclude"):
        build_pruner("harp-channel", 0.5, input_shape=(1, 12, 12)).attach(TinyViT())


@pytest.mark.parametrize("target", ["channels", "flops"])
def test_unseen_cnn_channel_harp_and_every_export(target, tmp_path):
    torch.manual_seed(0)
    model = UnseenCNN()
    with pytest.raises(HarpError, match="shared by several layers"):
        build_pruner("harp-channel", 0.5, input_shape=(1, 12, 12)).attach(UnseenCNN())
    tied = ("tied_in", "tied_out")  # one weight read by two layers: channel masks would have to agree
    pruner = build_pruner("harp-channel", 0.5, channel_target=target, input_shape=(1, 12, 12),
                          prunable=Prunable(exclude=tied))
    pruner.attach(model)
    optimizer = torch.optim.SGD(pruner.trainable_parameters(model), lr=0.1)
    for _ in range(3):
        x, y = torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,))
        (F.cross_entropy(model(x), y) + pruner.penalty(0)).backward()
        optimizer.step()
        optimizer.zero_grad()
    pruner.finalize()
    model.eval()
    budget = pruner.budget_report()
    assert budget["realised"] <= budget["target"] + 1e-9
    report = sparsity_report(model)
    assert report.total == sum(v for k, v in CNN_PRUNABLE.items() if k not in tied)
    assert [layer.name for layer in report.dense_layers] == ["tied_in"]
    for name, difference in _check_exports(model, UnseenCNN, tmp_path).items():
        assert difference < 1e-4, (name, difference)
