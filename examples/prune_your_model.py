"""Prune your own model on your own data with the whole HARP pipeline (``hp.run``).

    python examples/prune_your_model.py --out runs/example-own            # a few minutes on a CPU
    python examples/prune_your_model.py --out /tmp/example-own --quick    # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import copy

from _common import SmallNet, image_tensors

import harp_prune as hp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-own", help="where checkpoints and results go")
    parser.add_argument("--quick", action="store_true", help="a tiny run that only shows the code works")
    args = parser.parse_args()
    x, y, x_test, y_test = image_tensors(512 if args.quick else 6000, 100 if args.quick else 1000)

    # a stratified validation split selects each stage's best epoch; the test tensors are only evaluated
    train, val = hp.validation_split(x, y, val_fraction=0.1, seed=0)
    splits = hp.Splits(train=train, val=val, test=hp.tensor_dataset(x_test, y_test))
    epochs = 1 if args.quick else 5
    config = hp.build_config(
        out_dir=args.out, progress=not args.quick,
        attack={"eps": 0.1, "step_size": 0.025, "steps": 2 if args.quick else 10},  # your data: say its threat model
        pretrain={"epochs": epochs}, prune={"sparsity": 0.95, "epochs": epochs},
        finetune={"epochs": epochs}, evaluate={"pgd_steps": 2 if args.quick else 20, "sanity_examples": 50},
        data={"batch_size": 64})

    original = SmallNet()
    model = copy.deepcopy(original)  # hp.run trains and prunes the model it is given in place: keep the original
    results = hp.run(config, model=model, splits=splits)
    for stage in ("dense", "pruned"):
        record = results[stage]
        print(f"{stage}: natural {record['natural_acc']:.3f}, robust {record['robust_acc']}, "
              f"sparsity {record['sparsity']:.3f}")

    # the checkpoint of your architecture loads into a fresh instance of it
    reloaded, pruner, _ = hp.load_model(f"{args.out}/finetune/final.pt", model=SmallNet())
    print(f"reloaded: {hp.sparsity_report(reloaded).kept} weights kept, "
          f"budget {pruner.budget_report()['realised']:.4f}")


if __name__ == "__main__":
    main()
