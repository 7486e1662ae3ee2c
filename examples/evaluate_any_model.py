"""Robustness of any model in one call: natural and robust accuracy under PGD and AutoAttack, the point-wise
worst case, the eps sweep that flags gradient masking, and sparsity, as the record ``harp evaluate`` writes.

    python examples/evaluate_any_model.py --output robustness.json          # about a minute on a CPU
    python examples/evaluate_any_model.py --output /tmp/r.json --quick      # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _common import SmallNet, image_tensors
from torch.nn import functional as F
from torch.utils.data import DataLoader

import harp_prune as hp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="robustness.json", help="where the JSON record goes")
    parser.add_argument("--quick", action="store_true", help="a tiny evaluation that only shows the code works")
    args = parser.parse_args()
    torch.manual_seed(0)
    x, y, x_test, y_test = image_tensors(1000 if args.quick else 5000, 64 if args.quick else 1000)

    model = SmallNet()  # any classifier on [0, 1] images; here one trained for an epoch, naturally
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for images, labels in DataLoader(hp.tensor_dataset(x, y), batch_size=64, shuffle=True):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    # the full AutoAttack takes minutes on a CPU; --quick runs only its APGD-CE component
    options = {"autoattack_version": "apgd-ce"} if args.quick else {}
    record = hp.evaluate_robustness(model.eval(), (x_test, y_test), eps=0.1, attacks=["pgd20", "autoattack"],
                                    attack_options=options, sweep_examples=64 if args.quick else 500)
    print(f"natural {record['natural_acc']:.3f}, robust {record['robust_acc']}, "
          f"worst case {record['worst_case_acc']:.3f}, eps sweep {record['sanity']['robust_acc']}")
    for flag in record["flags"]:  # a naturally trained model: the sweep and AutoAttack's checks may warn
        print(f"flag: {flag}")
    Path(args.output).write_text(json.dumps(record, indent=2, default=float), encoding="utf-8")


if __name__ == "__main__":
    main()
