"""PGD and FGSM: they lower accuracy, stay within the eps-ball and [0, 1], and restore the model's mode."""

import pytest
import torch

from harp_prune.attacks import FGSM, PGD


def _accuracy(model, images, labels):
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


@pytest.mark.parametrize("attack", [PGD(0.1, 0.025, steps=5), PGD(0.1, 0.025, steps=3, restarts=2), FGSM(0.1),
                                    PGD(1.5, 0.4, steps=5, norm="l2")], ids=["pgd", "pgd-restarts", "fgsm", "pgd-l2"])
def test_attack_lowers_accuracy_and_stays_in_ball(trained_model, test_batch, attack):
    images, labels = test_batch
    clean = _accuracy(trained_model, images, labels)
    adversarial = attack(trained_model, images, labels)
    robust = _accuracy(trained_model, adversarial, labels)
    assert clean > 0.55
    assert robust < clean - 0.1
    delta = (adversarial - images).flatten(1)
    bound = delta.abs().max(1).values if attack.norm == "linf" else delta.norm(dim=1)
    assert torch.all(bound <= attack.eps + 1e-5)
    assert adversarial.min() >= 0 and adversarial.max() <= 1


def test_pgd_is_stronger_than_fgsm(trained_model, test_batch):
    images, labels = test_batch
    pgd = _accuracy(trained_model, PGD(0.1, 0.025, steps=10)(trained_model, images, labels), labels)
    fgsm = _accuracy(trained_model, FGSM(0.1)(trained_model, images, labels), labels)
    assert pgd <= fgsm + 0.01


def test_attack_runs_in_eval_mode_and_restores_training_mode(trained_model, test_batch):
    seen = []
    hook = trained_model.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    trained_model.train()
    try:
        PGD(0.1, 0.025, steps=2)(trained_model, *[t[:8] for t in test_batch])
    finally:
        hook.remove()
        trained_model.eval()
    assert seen and not any(seen)


def test_mode_restored(trained_model, test_batch):
    trained_model.train()
    FGSM(0.1)(trained_model, *[t[:4] for t in test_batch])
    assert trained_model.training
    trained_model.eval()
    FGSM(0.1)(trained_model, *[t[:4] for t in test_batch])
    assert not trained_model.training


def test_attack_does_not_touch_parameter_gradients(trained_model, test_batch):
    trained_model.zero_grad(set_to_none=True)
    PGD(0.1, 0.025, steps=2)(trained_model, *[t[:8] for t in test_batch])
    assert all(p.grad is None for p in trained_model.parameters())


def test_attacks_on_a_pruned_model_compute_the_masked_weights_once_with_the_same_result(monkeypatch):
    """Inside an attack the masked weights are cached (computed once, no graph to S and r): the adversarial
    examples, and the scores' and rates' gradients of the training step after it, equal the uncached ones."""
    from contextlib import nullcontext

    from harp_prune.attacks import base
    from harp_prune.models import build_model
    from harp_prune.pruning import HarpPaperPruner

    def attack_then_gradients() -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(0)
        model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
        pruner = HarpPaperPruner(0.9)  # the optimiser's rates: both the score and the rate gradients
        pruner.attach(model)
        x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        adversarial = PGD(0.1, 0.025, 4)(model, x, y)
        torch.nn.functional.cross_entropy(model(adversarial), y).backward()
        return adversarial, [g for layer in pruner.layers for g in (layer.scores.grad, layer.rate.grad)]

    reads = []
    original = base.fixed_weights

    def counting(model):
        reads.append(model)
        return original(model)

    monkeypatch.setattr(base, "fixed_weights", counting)
    cached_adversarial, cached_gradients = attack_then_gradients()
    assert len(reads) == 1  # the one attack computed the masked weights once, for all its steps
    monkeypatch.setattr(base, "fixed_weights", lambda model: nullcontext())
    plain_adversarial, plain_gradients = attack_then_gradients()
    assert torch.equal(cached_adversarial, plain_adversarial)
    assert all(torch.equal(a, b) for a, b in zip(cached_gradients, plain_gradients, strict=True))


def test_the_attack_cache_ends_with_the_attack():
    from torch.nn.utils import parametrize

    from harp_prune.models import build_model
    from harp_prune.pruning import HarpPruner

    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    pruner = HarpPruner(0.9)
    pruner.attach(model)
    PGD(0.1, 0.025, 2)(model, torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,)))
    assert not parametrize._cache_enabled and not parametrize._cache
    with torch.no_grad():
        pruner.layers[0].rate.fill_(-3.0)  # a new mask must be seen by the next read
    assert int(torch.count_nonzero(model.net.features[0].weight)) == pruner.layers[0].kept()


def test_an_attack_on_a_wrapper_leaves_the_wrapped_model_in_its_own_mode():
    """A new nn.Module is in train mode: restoring only the wrapper's flag would put the wrapped eval-mode model
    in train mode, and its BatchNorm statistics would move with the next forward pass."""
    inner = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).eval()
    wrapper = torch.nn.Sequential(inner)  # in train mode
    PGD(0.1, 0.025, 2)(wrapper, torch.rand(5, 1, 2, 2), torch.randint(0, 3, (5,)))
    assert wrapper.training and not any(module.training for module in inner.modules())
