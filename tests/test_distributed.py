"""Two gloo processes on the CPU against one process with the same global batch and seed.

Both runs prune the same dense small_cnn (HARP, 2 epochs, interrupted after the first and resumed), then
fine-tune one epoch and evaluate. The global batches are identical (the train sampler hands rank r every
second example of the one-process batch); what still differs: the PGD random starts (each rank draws its
own noise), BatchNorm batch statistics (per-rank halves of the batch: SyncBatchNorm is CUDA-only) and the
order of float sums. So the masks must agree on at least 97% of the kept weights (measured: 98.8% at 90%
sparsity), the per-layer kept counts move by under 2% of all kept weights, and the accuracies stay within
6 points on the 200 test images (measured: 1.5-2 points). Figures in docs/distributed.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dist_worker
import pytest
import torch

from harp_prune import distributed, pipeline
from harp_prune.config import build_config
from harp_prune.errors import HarpError
from harp_prune.models import build_model
from harp_prune.pipeline.runtime import per_rank_batch
from harp_prune.pruning import masked_layers
from harp_prune.training import load_model
from harp_prune.training.replicas import mask_checksum

HERE = Path(__file__).parent


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(nproc: int, *args: str, timeout: float = 240,
            worker: str = "dist_worker.py") -> subprocess.CompletedProcess:
    """``worker`` as a plain process (nproc 1) or under torchrun; one thread per process either way."""
    src = str(Path(pipeline.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(HERE), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    launcher = ["-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1",
                f"--master-port={_free_port()}"] if nproc > 1 else []
    command = [sys.executable, *launcher, str(HERE / worker), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _masks(path: Path) -> dict[str, torch.Tensor]:
    model, _, _ = load_model(path)
    return {name: layer.mask().bool() for name, layer in masked_layers(model).items()}


def mask_agreement(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Shared kept weights over the kept weights of ``a`` (1.0: identical masks)."""
    shared = sum(int((a[k] & b[k]).sum()) for k in a)
    return shared / sum(int(m.sum()) for m in a.values())


@pytest.fixture(scope="module")
def dense_source(tmp_path_factory) -> Path:
    """A dense small_cnn naturally trained for 3 epochs on the tiny data (single process)."""
    out, threads = tmp_path_factory.mktemp("dense"), torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = build_config(cli_values={"out_dir": str(out), "progress": False, "device": "cpu",
                                   "pretrain.objective": "natural", "pretrain.epochs": 3, "pretrain.lr": 0.05,
                                   "data.batch_size": 64, "data.val_fraction": 0.2})
    try:
        pipeline.pretrain(cfg, ctx=pipeline.prepare(cfg, dist_worker.tiny_splits()))
    finally:
        torch.set_num_threads(threads)
    return out / "pretrain" / "final.pt"


@pytest.mark.slow
def test_two_processes_match_one(dense_source: Path, tmp_path: Path) -> None:
    _launch(1, str(tmp_path / "one"), str(dense_source))
    done = _launch(2, str(tmp_path / "two"), str(dense_source))
    single = json.loads((tmp_path / "one" / "result.json").read_text())
    double = json.loads((tmp_path / "two" / "result.json").read_text())
    assert single["world_size"] == 1 and double["world_size"] == 2
    assert [row["epoch"] for row in double["prune_history"]] == [0, 1]  # resumed after epoch 1, not restarted
    assert "resuming after epoch 1" in done.stdout
    assert done.stdout.count("[prune] epoch 2/2") == 1  # rank 0 logs, rank 1 does not

    one, two = _masks(tmp_path / "one" / "prune" / "final.pt"), _masks(tmp_path / "two" / "prune" / "final.pt")
    agreement = mask_agreement(one, two)
    print(f"mask agreement {agreement:.4f}; " + "; ".join(
        f"{stage} {k} {single[stage][k]:.3f} vs {double[stage][k]:.3f}" for stage in ("pruned", "finetuned")
        for k in ("natural_acc", "sparsity")))
    print({name: (int(one[name].sum()), int(two[name].sum()), mask_agreement({name: one[name]}, {name: two[name]}))
           for name in one})
    assert agreement >= 0.97
    # the same layer budgets: the per-layer kept counts move by under 2% of the kept weights in all
    moved = sum(abs(int(one[name].sum()) - int(two[name].sum())) for name in one)
    assert moved <= 0.02 * sum(int(m.sum()) for m in one.values())
    for stage in ("pruned", "finetuned"):
        assert double[stage]["examples"] == single[stage]["examples"] == 200  # the shards cover the test set once
        assert abs(double[stage]["sparsity"] - single[stage]["sparsity"]) < 1e-3
        assert abs(double[stage]["natural_acc"] - single[stage]["natural_acc"]) <= 0.06
        for attack, value in single[stage]["robust_acc"].items():
            assert abs(double[stage]["robust_acc"][attack] - value) <= 0.06
    rows = zip(single["prune_history"], double["prune_history"], strict=True)
    for a, b in rows:  # the epoch figures are global: the same budget path and a similar loss
        assert abs(a["soft_density"] - b["soft_density"]) < 2e-3
        assert abs(a["train_loss"] - b["train_loss"]) < 0.1


def test_two_processes_evaluate_autoattack_and_sweep_like_one(trained_model, tmp_path: Path) -> None:
    """AutoAttack's per-image results, the worst case and the seeded eps sweep: the same whole split, once."""
    state = tmp_path / "model.pt"
    torch.save(trained_model.state_dict(), state)
    _launch(1, str(tmp_path / "one"), str(state), worker="dist_eval_worker.py")
    _launch(2, str(tmp_path / "two"), str(state), worker="dist_eval_worker.py")
    single = json.loads((tmp_path / "one" / "eval.json").read_text())
    double = json.loads((tmp_path / "two" / "eval.json").read_text())
    assert single["world_size"] == 1 and double["world_size"] == 2
    assert len(double["autoattack_robust"]) == len(single["autoattack_robust"]) == 40
    assert double["autoattack_robust"] == single["autoattack_robust"]
    assert double["autoattack_components"] == single["autoattack_components"]
    one, two = single["evaluation"], double["evaluation"]
    assert two["examples"] == one["examples"] == 40
    for key in ("natural_acc", "robust_acc", "worst_case_acc", "balanced_acc"):
        assert two[key] == one[key], key
    assert two["robust_acc"]["autoattack"] == sum(single["autoattack_robust"]) / 40
    details_one, details_two = one["attack_details"]["autoattack"], two["attack_details"]["autoattack"]
    assert details_two["components"] == details_one["components"]
    assert len(details_two["state_files"]) == len(details_one["state_files"]) == 3  # one per chunk, each run once
    assert double["sanity"]["examples"] == single["sanity"]["examples"] == 30
    assert double["sanity"]["robust_acc"] == single["sanity"]["robust_acc"]
    print({"autoattack": one["robust_acc"]["autoattack"], "worst_case": one["worst_case_acc"],
           "sweep": single["sanity"]["robust_acc"]})


def test_single_process_helpers_are_no_ops() -> None:
    assert not distributed.active() and distributed.is_main() and distributed.world_size() == 1
    assert distributed.all_reduce_sum({"a": 2.0}) == {"a": 2.0}
    assert distributed.broadcast_object({"x": 1}) == {"x": 1}
    model = build_model("small_cnn", (1, 28, 28), 10, (0.5,), (0.25,))
    assert distributed.wrap_for_training(model, torch.device("cpu")) is model


def test_shard_sampler_covers_every_example_once() -> None:
    shards = [list(distributed.ShardSampler(range(10), 3, r)) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(10)) and [len(s) for s in shards] == [4, 3, 3]


def test_mask_checksum_sees_one_flipped_weight(trained_model) -> None:
    model = build_model("small_cnn", (1, 28, 28), 10, (0.5,), (0.25,))
    model.load_state_dict(trained_model.state_dict())
    pruner = pipeline.make_pruner(build_config(cli_values={"prune.sparsity": 0.9}))
    pruner.attach(model)
    before = mask_checksum(model)
    assert mask_checksum(model) == before
    layer = pruner.layers[1]
    with torch.no_grad():  # swap the ranks of one kept and one pruned score
        flat = layer.scores.view(-1)
        mask = layer.mask().view(-1).bool()
        kept, dropped = int(mask.nonzero()[0]), int((~mask).nonzero()[0])
        flat[kept], flat[dropped] = flat[dropped].clone(), flat[kept].clone()
    assert mask_checksum(model) != before


def test_global_batch_must_divide_among_processes(monkeypatch) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(HarpError, match="divisible"):
        per_rank_batch(64)
    assert per_rank_batch(96) == 32

