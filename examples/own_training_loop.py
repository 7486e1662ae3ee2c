"""HARP inside your own training loop: a pruner, your optimizer over what it trains, its penalty in your loss.

    python examples/own_training_loop.py            # a few minutes on a CPU
    python examples/own_training_loop.py --quick    # seconds: a smoke test
"""

from __future__ import annotations

import argparse

import torch
from _common import SmallNet, image_tensors
from torch.nn import functional as F
from torch.utils.data import DataLoader

import harp_prune as hp


def train(model, loader, parameters, epochs, attack, pruner=None, lr=0.05):
    """Adversarial training (PGD-AT) of ``parameters``; with a pruner, plus its size penalty γ_e · L_hw."""
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9)
    for epoch in range(epochs):
        for images, labels in loader:
            adversarial = attack(model, images, labels)  # the attack puts the model in eval mode and back
            loss = F.cross_entropy(model(adversarial), labels)
            if pruner is not None:
                loss = loss + pruner.penalty(epoch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if pruner is not None:
                pruner.after_step()  # harp and frontier move their rates here (harp-paper: nothing)
        if pruner is not None:
            print(f"pruning epoch {epoch}: {pruner.end_epoch(epoch)}")  # γ, soft density, budget reached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run that only shows the code works")
    args = parser.parse_args()
    epochs, examples = (1, 256) if args.quick else (5, 5000)
    torch.manual_seed(0)
    x, y, x_test, y_test = image_tensors(examples, 200)
    loader = DataLoader(hp.tensor_dataset(x, y), batch_size=64, shuffle=True)
    attack = hp.PGD(eps=0.1, step_size=0.025, steps=2 if args.quick else 7)
    model = SmallNet().train()

    train(model, loader, model.parameters(), epochs, attack)  # 1. the dense model: all weights trained
    pruner = hp.HarpPruner(sparsity=0.95)
    pruner.attach(model)  # 2. masks on every Conv2d/Linear weight, in place
    pruner.plan(epochs, len(loader))  # the pruning stage's length: harp's budget trajectory is laid over it
    # only the scores, rates and BatchNorm are trained while pruning: the weights stay frozen (HARP, stage 2)
    train(model, loader, pruner.trainable_parameters(model), epochs, attack, pruner)
    pruner.finalize()  # the integer masks meet the global budget exactly
    print(f"budget: {pruner.budget_report()}")
    for param in model.parameters():  # 3. fine-tuning: the masks fixed, the kept weights trained
        param.requires_grad_(all(param is not p for layer in pruner.layers for p in (layer.scores, layer.rate)))
    train(model, loader, [p for p in model.parameters() if p.requires_grad], epochs, attack, lr=0.01)

    record = hp.evaluate_robustness(model, (x_test, y_test), eps=0.1, attacks=["pgd10"], sweep=None)
    print(f"sparsity {record['sparsity']:.3f}, natural {record['natural_acc']:.3f}, "
          f"PGD-10 {record['robust_acc']['pgd10']:.3f}")
    hp.unwrap_model(model)  # a plain model again, the pruned weights left at zero


if __name__ == "__main__":
    main()
