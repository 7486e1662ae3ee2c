"""Evaluation attacks: each lowers accuracy and stays in its ball; AutoAttack <= PGD; registry; sanity guards."""

from __future__ import annotations

import json

import pytest
import torch

from harp_prune.attacks import APGD, CWPGD, FGSM, PGD, AutoAttack, build_attack, cw_margin_loss
from harp_prune.errors import HarpError
from harp_prune.evaluation import balanced_accuracy, eps_sweep

EPS = 0.1


def acc(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def batch(test_batch):
    x, y = test_batch
    return x[::5].contiguous(), y[::5].contiguous()  # 40 images, 2 per class... spread over classes


@pytest.mark.parametrize("name,norm,eps", [("fgsm", "linf", EPS), ("pgd10", "linf", EPS), ("cw20", "linf", EPS),
                                           ("apgd-ce", "linf", EPS), ("pgd10", "l2", 1.5),
                                           ("apgd-ce", "l2", 1.5)])
def test_attack_lowers_accuracy_within_ball(trained_model, batch, name, norm, eps):
    x, y = batch
    attack = build_attack(name, eps, norm, step_size=eps / 4)
    torch.manual_seed(0)
    adv = attack(trained_model, x, y)
    delta = (adv - x).flatten(1)
    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert adv.min() >= 0 and adv.max() <= 1
    assert acc(trained_model, adv, y) < acc(trained_model, x, y) - 0.2
    assert not trained_model.training


def test_registry_names_and_errors():
    assert isinstance(build_attack("fgsm", EPS), FGSM)
    pgd = build_attack("pgd20", EPS, step_size=0.01, pgd_restarts=2)
    assert isinstance(pgd, PGD) and pgd.steps == 20 and pgd.restarts == 2 and pgd.step_size == 0.01
    cw = build_attack("cw20", EPS)
    assert isinstance(cw, CWPGD) and cw.steps == 20 and cw.kappa == 50
    apgd = build_attack("apgd-ce", EPS, seed=3)
    assert isinstance(apgd, APGD) and (apgd.steps, apgd.restarts, apgd.loss, apgd.seed) == (50, 5, "ce", 3)
    assert isinstance(build_attack("autoattack", EPS, "l2"), AutoAttack)
    with pytest.raises(HarpError, match="unknown attack"):
        build_attack("deepfool", EPS)
    with pytest.raises(HarpError, match="L-inf"):
        build_attack("fgsm", EPS, "l2")
    with pytest.raises(HarpError, match=r"attack 'autoattack' does not take option 'pgd_restarts'; it takes: "
                                        r"autoattack_version"):
        build_attack("autoattack", EPS, pgd_restarts=2)
    assert build_attack("cw10", EPS, cw_kappa=5.0, pgd_restarts=3).kappa == 5.0
    with pytest.raises(HarpError, match="custom"):
        AutoAttack(EPS, version="custom")


def test_cw_margin_loss_by_hand():
    logits = torch.tensor([[3.0, 1.0, 0.5], [0.0, 2.0, 60.0]])
    labels = torch.tensor([0, 1])
    # row 0: -(3 - 1 + 50) = -52; row 1: margin 2 - 60 + 50 = -8 < 0 -> clamped to 0
    assert torch.allclose(cw_margin_loss(logits, labels, reduction="none"), torch.tensor([-52.0, 0.0]))
    assert float(cw_margin_loss(logits, labels, kappa=0.0)) == pytest.approx(-2.0)


def test_autoattack_at_most_pgd_and_resumes(trained_model, batch, tmp_path):
    x, y = batch
    torch.manual_seed(0)
    pgd_robust = trained_model(PGD(EPS, EPS / 4, 10)(trained_model, x, y)).argmax(1) == y
    attack = AutoAttack(EPS, version="custom", components=["apgd-ce", "apgd-t"], state_dir=tmp_path)
    result = attack.run(trained_model, x, y)
    assert result.clean_acc == pytest.approx(acc(trained_model, x, y))
    assert result.robust_acc <= float(pgd_robust.float().mean()) + 1e-9
    assert list(result.components) == ["apgd-ce", "apgd-t"]
    assert result.components["apgd-t"] <= result.components["apgd-ce"] <= result.clean_acc
    # fooled points really are fooled by the returned adversarial examples, within the ball
    fooled = ~result.robust & (trained_model(x).argmax(1) == y)
    assert (trained_model(result.adversarial[fooled]).argmax(1) != y[fooled]).all()
    assert float((result.adversarial - x).abs().max()) <= EPS + 1e-5
    # resume: a state left after the first component makes the second run skip it
    state_file = tmp_path / result.state_files[0].split("/")[-1]
    state = json.loads(state_file.read_text())
    state["done"] = ["apgd-ce"]
    state["robust"] = [bool(v) for v in state["robust"]]
    state_file.write_text(json.dumps(state))
    again = attack.run(trained_model, x, y)
    assert again.resumed_from == ["apgd-ce"] and again.robust_acc <= result.components["apgd-ce"]


@pytest.mark.slow
def test_autoattack_standard_version_on_a_handful(trained_model, batch):
    # a larger eps so that APGD-CE breaks most points: FAB-T and Square on surviving points cost minutes on CPU
    x, y = batch[0][:4], batch[1][:4]
    result = AutoAttack(0.25).run(trained_model, x, y)
    assert list(result.components) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert result.robust_acc <= result.clean_acc
    assert result.flags == [] and result.robust_acc == result.components["square"]  # the last component's survivors


def test_autoattack_reports_official_flags(batch):
    x, y = batch

    class Probabilities(torch.nn.Module):  # outputs softmax: AutoAttack's check must flag it
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(28 * 28, 10)

        def forward(self, x):
            return self.fc(x.flatten(1)).softmax(1)

    torch.manual_seed(0)
    result = AutoAttack(EPS, version="custom", components=["apgd-ce"]).run(Probabilities(), x[:8], y[:8])
    assert any("probability distribution" in f for f in result.flags)


def test_balanced_accuracy_by_hand():
    labels = torch.tensor([0, 0, 0, 1])
    hit = torch.tensor([True, True, True, False])
    assert balanced_accuracy(hit, labels) == pytest.approx(0.5)  # plain accuracy would be 0.75


def test_eps_sweep_flags_a_masked_model(trained_model, batch):
    x, y = batch
    good = eps_sweep(trained_model, x, y, EPS, EPS / 4, "linf", [0.5, 1, 16], steps=5)
    assert good["ok"], good["warnings"]
    assert good["robust_acc"][-1] <= 0.05

    class Masked(torch.nn.Module):  # zero input gradient: PGD learns nothing, accuracy stays up
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model((x * 255).round().detach() / 255 + 0 * x)

    bad = eps_sweep(Masked(trained_model), x, y, EPS, EPS / 4, "linf", [0.5, 1, 16], steps=5)
    assert not bad["ok"] and any("still" in w for w in bad["warnings"])


def test_pipeline_evaluate_json_shape(trained_model, tiny_data, tmp_path):
    from harp_prune.config import build_config
    from harp_prune.data import make_splits
    from harp_prune.pipeline import evaluate, prepare

    config = build_config(cli_values={
        "out_dir": str(tmp_path), "progress": False, "evaluate.attacks": "fgsm,pgd5,autoattack",
        "evaluate.autoattack_version": "apgd-ce", "evaluate.eps_sweep": "1,16", "evaluate.sanity_examples": 30,
        "data.eval_batch_size": 16,
    })
    ctx = prepare(config, make_splits(tiny_data, 0.2, seed=0, test_limit=40))
    torch.manual_seed(0)
    result = evaluate(config, model=trained_model, ctx=ctx)
    assert set(result["robust_acc"]) == {"fgsm", "pgd5", "autoattack"}
    assert result["worst_case_acc"] <= min(result["robust_acc"].values()) <= result["clean_acc"]
    assert result["threat_model"] == "Linf" and result["eps"] == 0.1 and result["n_examples"] == 40
    assert set(result["balanced_acc"]) == {"natural", "fgsm", "pgd5", "autoattack", "worst_case"}
    details = result["attack_details"]["autoattack"]
    assert list(details["components"]) == ["apgd-ce"] and details["state_files"][0].startswith(str(tmp_path))
    assert result["sanity"]["examples"] == 30 and len(result["sanity"]["robust_acc"]) == 2
    assert result["flags"] == [] and result["sanity"]["ok"] and result["sparsity"] == 0.0
    weights = {name: m.weight.numel() for name, m in trained_model.named_modules()
               if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)}
    assert {layer["name"]: layer["kept"] for layer in result["layers"]} == weights  # dense: every weight kept
    with pytest.raises(HarpError, match="unknown attack"):
        evaluate(build_config(cli_values={"out_dir": str(tmp_path), "evaluate.attacks": "pgd5,foo"}),
                 model=trained_model, ctx=ctx)


def test_seeded_sweep_and_attacks_repeat_whatever_the_global_random_state(trained_model, batch):
    from torch.utils.data import DataLoader, TensorDataset

    from harp_prune.evaluation import evaluate_model

    x, y = batch
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        before = torch.random.get_rng_state()
        sweep = eps_sweep(trained_model, x, y, EPS, EPS / 4, "linf", [0.5, 1], steps=2, batch_size=16, seed=7)
        assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream is left alone
        loader = DataLoader(TensorDataset(x, y), batch_size=16)
        result = evaluate_model(trained_model, loader, {"pgd2": PGD(EPS, EPS / 4, 2)}, torch.device("cpu"), seed=7)
        runs.append((sweep["robust_acc"], result["robust_acc"], result["worst_case_acc"]))
    assert runs[0] == runs[1]


def test_autoattack_chunks_are_independent_and_combine_to_the_whole_set(trained_model, batch, tmp_path):
    x, y = batch
    attack = AutoAttack(EPS, version="custom", components=["apgd-ce"], batch_size=16, state_dir=tmp_path)
    whole = attack.run(trained_model, x, y)
    parts = [attack.run_chunk(trained_model, x[i:i + 16], y[i:i + 16]).without_examples() for i in (0, 16, 32)]
    combined = attack.combine(parts)
    assert len(whole.state_files) == 3 and len(whole.robust) == len(whole.adversarial) == 40
    assert torch.equal(combined.robust, whole.robust.cpu()) and combined.adversarial is None
    assert combined.components == pytest.approx(whole.components)
    assert whole.components["apgd-ce"] == pytest.approx(whole.robust_acc)
    assert whole.clean_acc == pytest.approx(acc(trained_model, x, y))
    assert combined.resumed_from == ["apgd-ce"]  # the second pass read each chunk's state file
