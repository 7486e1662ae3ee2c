"""Channel masks on resnet18_w16: one score per input channel, tie groups found by tracing, tied masks."""

from __future__ import annotations

import torch

from harp_prune.models import build_model
from harp_prune.pruning import ChannelMaskedLayer, build_pruner, masked_layers

SHAPE = (3, 32, 32)


def _pruned(sparsity: float = 0.5):
    torch.manual_seed(0)
    model = build_model("resnet18_w16", SHAPE, 10, [0.5] * 3, [0.25] * 3)
    pruner = build_pruner("harp-channel", sparsity, input_shape=SHAPE)
    layers = pruner.attach(model)
    return model, pruner, layers


def test_scores_are_one_per_input_channel_and_masks_broadcast():
    _, _, layers = _pruned()
    assert len(layers) == 21
    for layer in layers.values():
        assert isinstance(layer, ChannelMaskedLayer)
        c_in = layer.weight.shape[1]
        assert layer.scores.shape == (c_in,)
        assert layer.mask().shape == (c_in,)
        assert layer.weight_mask().shape == ((1, c_in, 1, 1) if layer.weight.dim() == 4 else (1, c_in))


def test_scores_start_at_the_true_input_channel_l1_norm():
    _, _, layers = _pruned()
    conv = layers["net.layer1.0.conv2"]  # an untied layer: its scores rank channels by sum |W[:, c]|
    l1 = conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.equal(torch.argsort(conv.scores.detach()), torch.argsort(l1))
    assert torch.allclose(conv.scores.detach() / conv.scores.detach().max(), l1 / l1.max(), atol=1e-6)


def test_tie_groups_join_each_shortcut_with_its_block_conv():
    _, pruner, layers = _pruned()
    groups = [g for g in pruner.trace.groups if len(g) > 1]
    assert groups == [[f"net.layer{i}.0.conv1", f"net.layer{i}.0.shortcut.0"] for i in (2, 3, 4)]
    assert len(pruner.trace.groups) == 18
    for i in (2, 3, 4):
        conv, shortcut = layers[f"net.layer{i}.0.conv1"], layers[f"net.layer{i}.0.shortcut.0"]
        assert conv.scores is shortcut.scores and conv.rate is shortcut.rate
    # an identity-shortcut block's conv1 reads the previous block's output alone
    assert ["net.layer1.1.conv1"] in pruner.trace.groups


def test_tied_layers_keep_the_same_channels_after_training_steps_and_reload(tmp_path):
    model, pruner, layers = _pruned()
    params = pruner.trainable_parameters(model)
    optimizer = torch.optim.SGD(params, lr=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        loss = model(torch.rand(2, *SHAPE)).logsumexp(1).mean() + pruner.penalty(5)
        loss.backward()
        optimizer.step()
    pruner.finalize()
    conv, shortcut = layers["net.layer3.0.conv1"], layers["net.layer3.0.shortcut.0"]
    assert torch.equal(conv.mask(), shortcut.mask())
    assert 0 < int(conv.mask().sum()) < conv.units
    # the pruner rebuilds the ties before loading, so a reloaded model has them too
    state = model.state_dict()
    fresh = build_model("resnet18_w16", SHAPE, 10, [0.5] * 3, [0.25] * 3)
    build_pruner("harp-channel", 0.5, input_shape=SHAPE).attach(fresh)
    fresh.load_state_dict(state)
    reloaded = masked_layers(fresh)
    assert reloaded["net.layer3.0.conv1"].scores is reloaded["net.layer3.0.shortcut.0"].scores
    assert torch.equal(reloaded["net.layer3.0.shortcut.0"].mask(), shortcut.mask())


def test_image_channels_are_never_dropped():
    _, pruner, layers = _pruned(0.9)
    pruner.finalize()
    stem = layers["net.conv1"]
    assert stem.min_keep == 1.0 and int(stem.mask().sum()) == 3
    assert pruner.trace.groups[pruner.trace.input_group] == ["net.conv1"]


def test_scores_get_one_gradient_per_channel():
    model, pruner, layers = _pruned()
    pruner.trainable_parameters(model)
    model(torch.rand(2, *SHAPE)).sum().backward()
    conv = layers["net.layer2.0.conv1"]
    assert conv.scores.grad.shape == conv.scores.shape and conv.rate.grad is not None
    assert torch.count_nonzero(conv.scores.grad) > 0
