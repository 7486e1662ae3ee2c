"""The FLOPs/params size loss comes from traced layer shapes: checked against a hand count on small_cnn."""

from __future__ import annotations

import pytest

from harp_prune.errors import HarpError
from harp_prune.models import build_model
from harp_prune.pruning import build_pruner

# small_cnn on 1x28x28: conv 1->16 (3x3, 28x28 out), pool, conv 16->32 (3x3, 14x14 out), pool,
# fc 32*7*7=1568 -> 100, fc 100 -> 10. FLOPs = 2 * MACs.
CONV1 = 1 * 16 * 9 * 28 * 28
CONV2 = 16 * 32 * 9 * 14 * 14
FC1 = 1568 * 100
FC2 = 100 * 10


def _pruner(shape=(1, 28, 28), sparsity=0.5, target="channels"):
    model = build_model("small_cnn", shape, 10, [0.5], [0.25])
    pruner = build_pruner("harp-channel", sparsity, input_shape=shape, channel_target=target)
    pruner.attach(model)
    return model, pruner


def test_dense_flops_and_params_match_a_hand_count():
    _, pruner = _pruner()
    assert pruner.cost.dense("flops") == 2 * (CONV1 + CONV2 + FC1 + FC2)
    assert pruner.cost.dense("params") == 16 * 9 + 16 * 32 * 9 + 1568 * 100 + 100 * 10


def test_pruned_flops_scale_inputs_and_linked_outputs():
    _, pruner = _pruner()
    # groups: image (never pruned), conv2's input (linked: conv1's filters go too), fc1's input (after a
    # flatten: gathered, conv2 keeps its filters), fc2's input (linked to fc1's outputs)
    r = [1.0, 0.5, 0.25, 0.75]
    expected = 2 * (CONV1 * r[1] + CONV2 * r[1] + FC1 * r[2] * r[3] + FC2 * r[3])
    assert pruner.cost.measure(r, "flops") == pytest.approx(expected)


def test_channel_target_is_the_uniformly_thinned_model():
    _, pruner = _pruner(sparsity=0.5)
    k = 0.5
    assert pruner.budget == pytest.approx(2 * (CONV1 * k + CONV2 * k + FC1 * k * k + FC2 * k))


def test_other_input_sizes_are_traced_not_hard_coded():
    _, pruner = _pruner(shape=(1, 32, 32))
    conv2 = 16 * 32 * 9 * 16 * 16
    assert pruner.cost.dense("flops") == 2 * (16 * 9 * 32 * 32 + conv2 + 2048 * 100 + FC2)


def test_flops_and_params_targets_are_fractions_and_finalize_meets_them():
    for target in ("flops", "params"):
        _, pruner = _pruner(sparsity=0.6, target=target)
        kind = "params" if target == "params" else "flops"
        assert pruner.budget == pytest.approx(0.4 * pruner.cost.dense(kind))
        assert float(pruner.size_loss().detach()) > 0  # starts near dense
        pruner.finalize()
        assert pruner.realised()[kind] <= 0.4 + 1e-9
        assert pruner.realised()[kind] > 0.3


def test_size_loss_gradient_reaches_the_rates():
    _, pruner = _pruner()
    pruner.size_loss().backward()
    assert all(layer.rate.grad is not None for layer in pruner.group_layers[1:])


def test_bad_target_and_missing_shape_are_explained():
    with pytest.raises(HarpError, match="option 'channel_target' of pruning method 'harp-channel' must be one of "
                                        "channels, flops, params"):
        build_pruner("harp-channel", 0.5, channel_target="bytes")
    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    with pytest.raises(HarpError, match="input shape"):
        build_pruner("harp-channel", 0.5).attach(model)
    with pytest.raises(HarpError, match="could not trace"):
        build_pruner("harp-channel", 0.5, input_shape=(3, 28, 28)).attach(model)
