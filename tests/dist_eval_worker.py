"""AutoAttack (APGD-CE), FGSM and a seeded eps sweep on 40 test images, in one process or under torchrun.

``python dist_eval_worker.py OUT STATE`` (or ``torchrun --nproc-per-node 2 dist_eval_worker.py OUT STATE``)
loads the small_cnn state dict STATE and writes the per-image AutoAttack results and the evaluation
figures to ``OUT/eval.json`` (rank 0). Used by test_distributed.py.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harp_prune import distributed, pipeline
from harp_prune.config import build_config
from harp_prune.data import load_embedded_fashion_mnist, make_splits
from harp_prune.evaluation import evaluate_model, whole_set_result
from harp_prune.models import build_model
from harp_prune.pipeline import evaluation_attacks, sanity_section
from harp_prune.results import write_json

EXAMPLES = 40


def main(out_dir: str, state: str) -> None:
    data = load_embedded_fashion_mnist()
    # eval batch 16: three AutoAttack chunks (16, 16, 8) and two sweep chunks (16, 14), shared by the ranks
    cfg = build_config(cli_values={
        "out_dir": out_dir, "progress": False, "device": "cpu", "data.eval_batch_size": 16,
        "evaluate.attacks": "fgsm,autoattack", "evaluate.autoattack_version": "apgd-ce",
        "evaluate.eps_sweep": "0.5,1,4", "evaluate.sanity_examples": 30, "evaluate.pgd_steps": 3,
    })
    ctx = pipeline.prepare(cfg, make_splits(data, 0.2, seed=0, test_limit=EXAMPLES))
    model = build_model("small_cnn", data.input_shape, 10, data.mean, data.std)
    model.load_state_dict(torch.load(state, weights_only=True))
    attacks = evaluation_attacks(cfg, Path(out_dir) / "autoattack")
    result = evaluate_model(model, ctx.test_loader, attacks, ctx.device, seed=cfg.seed)
    autoattack = whole_set_result(attacks["autoattack"], model, ctx.test_loader, ctx.device)
    sanity = sanity_section(cfg, model, ctx.test_loader, ctx.device, seed=cfg.seed)
    write_json({"world_size": distributed.world_size(), "evaluation": result, "sanity": sanity,
                         "autoattack_robust": autoattack.robust.tolist(), "autoattack_clean": autoattack.clean_acc,
                         "autoattack_components": autoattack.components}, Path(out_dir) / "eval.json")


if __name__ == "__main__":
    from dist_worker import run_as_worker  # the scripts run from tests/, which is then on sys.path

    run_as_worker(main)
