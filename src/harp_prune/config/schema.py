"""The configuration of a run: one dataclass per section, every field declared with its default and help.

A component's options (a pruning method's γ0, an objective's β, an attack's restarts) are not fields here:
each component declares them (``harp_prune.registry``), and a section holds the values set for them in an
options dict (``prune.method_options``, ...) that YAML files and flags address as ``prune.gamma0``
(``keys.py``). Data-set-dependent values (the attack's eps and step size) default to ``None`` and are filled
from the data set's declared defaults only when nobody set them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from harp_prune.data import DATASETS
from harp_prune.models import MODELS
from harp_prune.pruning import PRUNERS
from harp_prune.registry import option
from harp_prune.training import OBJECTIVES, OPTIMIZERS


@dataclass(slots=True)
class DataConfig:
    dataset: str = option("fashion-mnist-small", "the data set", choices=DATASETS)
    root: str | None = option(None, "folder of the data files for on-disk data sets")
    val_fraction: float = option(0.1, "stratified share of the training data held out for model selection")
    batch_size: int = option(128, "the global training batch (under torchrun each of N processes gets batch_size / N)")
    eval_batch_size: int = option(500, "the batch of evaluations")
    train_examples: int | None = option(None, "train on a stratified subset of this many training images (quick runs)")
    test_examples: int | None = option(None, "evaluate on a stratified subset of this many test images")
    workers: int = option(0, "DataLoader worker processes")
    augment: bool | None = option(None, "random crop (pad 4) and horizontal flip of training batches (none: the "
                                        "data set's default)")


@dataclass(slots=True)
class AttackConfig:
    """The threat model of training and of validation (PGD-k, L-inf by default)."""

    norm: str = option("linf", "the threat model's norm", choices=("linf", "l2"))
    eps: float | None = option(None, "the perturbation budget (none: the data set's, Fashion-MNIST 0.1, CIFAR 8/255)")
    step_size: float | None = option(None, "PGD step size (none: the data set's, Fashion-MNIST 0.025, CIFAR 2/255)")
    steps: int = option(10, "PGD steps of training and validation attacks")


@dataclass(slots=True)
class StageConfig:
    epochs: int = option(10, "training epochs of the stage")
    lr: float = option(0.1, "initial learning rate (cosine schedule)")
    optimizer: str = option("sgd", "the optimiser (sgd: the paper's; adam and adamw usually want a lr near 1e-3)",
                            choices=OPTIMIZERS)
    momentum: float = option(0.9, "SGD momentum; beta1 of adam and adamw")
    weight_decay: float = option(5e-4, "weight decay (adamw: decoupled from the gradient)")
    objective: str | None = option(None, "training objective (none: pretrain's)", choices=OBJECTIVES)
    # the options of the objective, by name (``pretrain.beta``); see harp_prune.training.OBJECTIVES
    objective_options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PretrainConfig(StageConfig):
    objective: str | None = option("pgd_at", "training objective", choices=OBJECTIVES)


@dataclass(slots=True)
class PruneConfig(StageConfig):
    # 4, not 8: on the embedded data the budget is met in epoch 2 and the last epochs added < 1 point while
    # costing a quarter of the default run (README, "What `harp run` prints")
    epochs: int = option(4, "pruning epochs (scores and rates are trained, weights frozen)")
    method: str = option("harp", "the pruning method", choices=PRUNERS)
    sparsity: float = option(0.99, "fraction of the prunable weights removed (harp-channel: see its channel_target)")
    source: str | None = option(None, "dense checkpoint to prune (none: <out_dir>/pretrain/final.pt)")
    layer_types: str = option("conv2d,linear,attention",
                              "module types whose weights get masks (conv1d, conv2d, conv3d, linear, attention = "
                              "MultiheadAttention's projections)")
    include_parameters: str = option("", "extra parameters to prune, by name or glob pattern (e.g. *.pos_embedding)")
    exclude: str = option("", "module or parameter names or glob patterns left dense (e.g. net.classifier.*)")
    # the options of the pruning method, by name (``prune.gamma0``); see harp_prune.pruning.PRUNERS
    method_options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class FinetuneConfig(StageConfig):
    epochs: int = option(4, "fine-tuning epochs (masks fixed); 4, not 8: the validation accuracy is flat after epoch 3")
    lr: float = option(0.01, "initial learning rate (cosine schedule)")
    source: str | None = option(None, "pruned checkpoint to fine-tune (none: <out_dir>/prune/final.pt)")


@dataclass(slots=True)
class EvalConfig:
    pgd_steps: int = option(20, "steps of the default PGD evaluation and of the eps sweep")
    attacks: str | None = option(None, "comma-separated evaluation attacks: fgsm, pgd<K>, cw<K>, apgd-ce, apgd-dlr, "
                                       "autoattack (none: pgd<pgd_steps>)")
    eps_sweep: str | None = option("0.5,1,2,16", "sanity check: PGD at these multiples of eps (none: skip)")
    sanity_examples: int = option(500, "test images the eps sweep uses")
    checkpoint: str | None = option(None, "checkpoint `harp evaluate` reads (none: <out_dir>/finetune/final.pt)")
    # the options of the evaluation attacks, by name (``evaluate.pgd_restarts``); see harp_prune.attacks.ATTACKS
    attack_options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CompareConfig:
    """`harp compare`: every method at every sparsity (and seed) from one pre-trained model."""

    methods: str = option("harp,hydra,lwm,global-magnitude,lamp,erk,random",
                          "comma-separated pruning methods; method:budget runs hydra on a layer budget or harp from "
                          "an initial strategy (e.g. hydra:lamp)")
    sparsities: str = option("0.9,0.99,0.999", "comma-separated target sparsities")
    seeds: str = option("0", "comma-separated seeds of pruning and fine-tuning (one pre-training)")
    gamma0_sweep: str = option("", "comma-separated γ0 values: extra harp-paper cells, e.g. 0.001,0.01,0.1")
    jobs: int = option(1, "cells run at once, each in its own process on the same device")


@dataclass(slots=True)
class RunConfig:
    """The settings of a run, one dataclass per section (``data``, ``attack``, ``pretrain``, ``prune``,
    ``finetune``, ``evaluate``, ``compare``); every field is a config key (``prune.sparsity``) and a flag.

    Build one with ``build_config``, which checks it and fills the data set's defaults; ``RunConfig()`` itself
    holds the plain defaults, with eps and step size unset. ``provenance`` records where each value came from.
    """

    model: str = option("small_cnn", "the zoo model", choices=MODELS)
    seed: int = option(0, "seed of data splits, initialisation, shuffling, pruning and evaluation")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    out_dir: str = option("runs/default", "where the run's checkpoints and results go")
    select_on: str = option("val", "what selects each stage's best epoch: held-out training data (val) or the test "
                                   "split (test, the official code's choice)", choices=("val", "test"))
    progress: bool = option(True, "progress bars")
    tensorboard: bool = option(False, "also log every epoch's metrics (those of <out_dir>/metrics.jsonl) to "
                                      "TensorBoard under <out_dir>/tensorboard (needs the tensorboard package)")
    amp: bool = option(False, "bf16 autocast for the attack and forward of training steps (CUDA; slow on CPU)")
    channels_last: bool = option(False, "NHWC memory format for conv models on GPUs")
    compile: bool = option(False, "torch.compile the training forward")
    sync_bn: bool = option(False, "SyncBatchNorm across torchrun ranks (CUDA only)")
    data: DataConfig = field(default_factory=DataConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    provenance: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data, each section's component options flattened into it (``prune.gamma0``):
        the layout of a YAML config file, so a saved config reads back as it was."""
        out = dataclasses.asdict(self)
        out.pop("provenance")
        for section in out.values():
            if isinstance(section, dict):
                for bag in [name for name in section if name.endswith("_options")]:
                    section.update(section.pop(bag))
        return out
