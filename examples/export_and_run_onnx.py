"""Export a pruned model and run it without PyTorch-side masks: ONNX with the pruned channels removed, run by
onnxruntime (``pip install 'harp-prune[onnx]'``), and the sparse file that stores only the kept weights.

    python examples/export_and_run_onnx.py --out exports            # about a minute on a CPU
    python examples/export_and_run_onnx.py --out /tmp/ex --quick    # seconds: a smoke test
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from _common import SmallNet, image_tensors
from torch.nn import functional as F
from torch.utils.data import DataLoader

import harp_prune as hp

INPUT_SHAPE = (1, 28, 28)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="exports", help="folder of the exported files")
    parser.add_argument("--quick", action="store_true", help="a tiny run that only shows the code works")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    x, y, x_test, _ = image_tensors(256 if args.quick else 5000, 16)

    # channel pruning (half the FLOPs) learned for a few steps; any pruned model exports the same way
    model = SmallNet()
    pruner = hp.build_pruner("harp-channel", 0.5, input_shape=INPUT_SHAPE, channel_target="flops")
    pruner.attach(model)
    optimizer = torch.optim.SGD(pruner.trainable_parameters(model), lr=0.1, momentum=0.9)
    for epoch in range(1 if args.quick else 3):
        for images, labels in DataLoader(hp.tensor_dataset(x, y), batch_size=64, shuffle=True):
            optimizer.zero_grad()
            (F.cross_entropy(model(images), labels) + pruner.penalty(epoch)).backward()
            optimizer.step()
        pruner.end_epoch(epoch)
    pruner.finalize()
    model.eval()

    # export_model works on a copy: the masked model stays as it is
    report = hp.export_model(model, "onnx", out / "model.slim.onnx", INPUT_SHAPE, slim=True)
    print(f"ONNX: {report['slim_params']:,} of {report['dense_params']:,} parameters, {report['bytes']:,} bytes, "
          f"max error against the masked model {report['onnx_max_error']:.2e}")
    session = onnxruntime.InferenceSession(str(out / "model.slim.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": x_test.numpy()})[0]
    with torch.no_grad():
        expected = model(x_test).numpy()
    print(f"onnxruntime on {len(x_test)} images: predictions {logits.argmax(1).tolist()}, "
          f"largest difference {np.abs(logits - expected).max():.2e}")

    sparse = hp.export_model(model, "sparse", out / "model.sparse.safetensors", INPUT_SHAPE)
    state, _ = hp.load_sparse(out / "model.sparse.safetensors")
    plain = SmallNet()
    plain.load_state_dict(state)  # the zeroed weights in your own architecture, no masks
    with torch.no_grad():
        difference = (plain.eval()(x_test) - model(x_test)).abs().max()
    print(f"sparse file: {sparse['bytes']:,} bytes ({sparse['ratio_to_dense_file']:.2f} of the dense file), "
          f"loaded into SmallNet: largest difference {difference:.2e}")


if __name__ == "__main__":
    main()
