"""What only a CUDA device exercises: tensors made on the CPU meeting tensors on the GPU.

Skipped without CUDA (CI has none); run them on a GPU machine with ``pytest tests/test_cuda.py``. Both bugs they
cover were found by the first GPU run of benchmarks/compare_paper_gpu.py: LAMP and global-magnitude budgets
indexed CPU layer owners with CUDA indices, and a resumed stage handed CUDA generator states to
``torch.set_rng_state``.
"""

import pytest
import torch

from harp_prune.cli import main
from harp_prune.models import build_model
from harp_prune.pruning import HarpPruner
from harp_prune.pruning.global_magnitude import global_magnitude_densities
from harp_prune.pruning.lamp import lamp_densities
from harp_prune.training import load_checkpoint, save_atomic

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("strategy", [lamp_densities, global_magnitude_densities])
def test_layer_budgets_on_cuda_equal_those_on_cpu(strategy):
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    pruner = HarpPruner(0.99)
    pruner.attach(model)
    expected = strategy(pruner.layers, 0.01)
    model.cuda()
    assert pruner.layers[0].weight.is_cuda
    assert strategy(pruner.layers, 0.01) == expected


def test_stage_resumes_on_cuda(tmp_path):
    args = ["pretrain", "--out-dir", str(tmp_path), "--device", "cuda", "--no-progress", "--data-train-examples",
            "200", "--data-val-fraction", "0.05", "--attack-steps", "2", "--data-batch-size", "50",
            "--pretrain-epochs", "2"]
    assert main(args) == 0
    # make the finished stage look killed after its first epoch, then resume it on the GPU
    stage = tmp_path / "pretrain"
    last = load_checkpoint(stage / "last.pt")
    save_atomic({**last, "epoch": 0, "history": last["history"][:1]}, stage / "last.pt")
    (stage / "final.pt").unlink()
    assert main([*args, "--resume"]) == 0
    assert [row["epoch"] for row in load_checkpoint(stage / "last.pt")["history"]] == [0, 1]
