"""The official AutoAttack code (Croce & Hein 2020) through the ``pyautoattack`` package.

``APGD`` wraps the official APGD class as a per-batch attack. ``AutoAttack`` runs the ensemble on a whole
set of points, so the robust accuracy is the point-wise worst case over its components. The set is cut
into consecutive chunks of ``batch_size`` points, each evaluated on its own: the official attacks reseed
per batch, so a point's result depends on the points that share its batch, and independent chunks make
the result the same whether one process evaluates every chunk or torchrun ranks share them out
(``harp_prune.evaluation.chunks``). On each chunk it drives the official ``AutoAttack`` object one
component at a time, each on the points still robust, which is what ``run_standard_evaluation`` does
internally, and saves the robust flags after every component to a state file keyed by a fingerprint of
model, data and settings: an interrupted evaluation resumes with the components it has not run.
(pyautoattack 0.2.0's own ``state_path`` resume raises UnboundLocalError on its ``y_adv`` when a state
is restored, so it is not used.) The official sanity checks (randomised or
dynamic defence, probability outputs, zero gradients, Square beating the gradient attacks) are captured
as ``flags``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harp_prune.attacks.base import Attack, eval_mode, fixed_weights
from harp_prune.errors import HarpError

NORMS = {"linf": "Linf", "l2": "L2"}
VERSIONS = ("standard", "plus", "rand", "custom")


def _pyautoattack():
    try:
        import pyautoattack
        from pyautoattack import AutoAttack as OfficialAutoAttack
        from pyautoattack import checks
        from pyautoattack.autopgd_base import APGDAttack
    except ImportError as exc:
        raise HarpError("AutoAttack needs the official code: pip install 'harp-prune[autoattack]' "
                        "(pyautoattack==0.2.0)") from exc
    return pyautoattack, OfficialAutoAttack, APGDAttack, checks


def pyautoattack_version() -> str | None:
    try:
        import pyautoattack
    except ImportError:
        return None
    return pyautoattack.__version__


class _Collector(logging.Handler):
    """Keeps the official code's warnings (its check flags) and the debug lines with per-component accuracy."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.flags: list[str] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            if message not in self.flags:
                self.flags.append(message)
        else:
            self.lines.append(message)


@contextmanager
def _official_run(logger: logging.Logger, collector: _Collector):
    """Capture the official code's log and warnings, keep the caller's RNG state (APGD reseeds torch)."""
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(collector)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            text = str(w.message)
            if text not in collector.flags and "flags_doc" in text:
                collector.flags.append(text)
    finally:
        logger.removeHandler(collector)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


class APGD(Attack):
    """APGD (official code) on the CE or DLR loss; HARP's ``autopgd``: 50 steps, 5 restarts."""

    name = "apgd"
    norms = ("linf", "l2")

    def __init__(self, eps: float, norm: str = "linf", loss: str = "ce", steps: int = 50, restarts: int = 5,
                 seed: int = 0) -> None:
        super().__init__(eps, norm)
        if loss not in ("ce", "dlr"):
            raise HarpError(f"APGD loss must be 'ce' or 'dlr', got '{loss}'")
        self.loss, self.steps, self.restarts, self.seed = loss, int(steps), int(restarts), int(seed)
        self.flags: list[str] = []

    def perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _, _, APGDAttack, _ = _pyautoattack()
        logger, collector = logging.getLogger("harp.apgd"), _Collector()
        attack = APGDAttack(model, n_iter=self.steps, norm=NORMS[self.norm], n_restarts=self.restarts, eps=self.eps,
                            seed=self.seed, loss=self.loss, device=images.device, logger=logger)
        with _official_run(logger, collector):
            adversarial = attack.perturb(images, labels)
        self.flags.extend(f for f in collector.flags if f not in self.flags)
        return self.project(adversarial, images)


@dataclass
class AutoAttackResult:
    """What one AutoAttack evaluation found, point by point."""

    adversarial: torch.Tensor | None  # None once dropped (results gathered from other processes)
    robust: torch.Tensor  # bool per point: correct on the clean input and under every component
    clean_acc: float
    components: dict[str, float]  # robust accuracy after each component (cumulative, point-wise worst case)
    flags: list[str]
    resumed_from: list[str] = field(default_factory=list)  # components read from a state file, in any chunk
    state_files: list[str] = field(default_factory=list)

    @property
    def robust_acc(self) -> float:
        return float(self.robust.double().mean())

    def without_examples(self) -> AutoAttackResult:
        """The figures only (robust flags on the CPU), cheap to send to other processes."""
        return replace(self, adversarial=None, robust=self.robust.cpu())


def _fingerprint(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for value in (images, labels, *model.state_dict().values()):
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        else:  # extra state (e.g. a masked layer's settings)
            digest.update(repr(value).encode())
    return digest.hexdigest()[:16]


class AutoAttack(Attack):
    """Official AutoAttack; ``version="standard"`` is APGD-CE, APGD-T, FAB-T and Square.

    :param version: standard | plus | rand | custom (then ``components`` picks the attacks, e.g. ["apgd-ce"]);
    :param batch_size: the official code's batch size and the size of the independently evaluated chunks;
    :param state_dir: folder for resumable state files (one per chunk).
    """

    name = "autoattack"
    norms = ("linf", "l2")
    whole_set = True  # evaluation must hand it the whole chosen set at once

    def __init__(self, eps: float, norm: str = "linf", version: str = "standard", components: list[str] | None = None,
                 seed: int = 0, batch_size: int = 500, state_dir: str | Path | None = None) -> None:
        super().__init__(eps, norm)
        if version not in VERSIONS:
            raise HarpError(f"AutoAttack version must be one of {', '.join(VERSIONS)}, got '{version}'")
        if (version == "custom") != bool(components):
            raise HarpError("AutoAttack: give components (e.g. apgd-ce,square) exactly when version is 'custom'")
        self.version, self.components = version, list(components or [])
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.state_dir = Path(state_dir) if state_dir is not None else None

    @property
    def chunk_size(self) -> int:
        """Points evaluated together; chunks of this size are independent of each other."""
        return self.batch_size

    def perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adversarial = self.run(model, images, labels).adversarial
        assert adversarial is not None  # only without_examples() drops them
        return adversarial

    def run(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> AutoAttackResult:
        """The full evaluation of ``images``, chunk by chunk (in eval mode, the model's mode restored)."""
        return self.combine([self.run_chunk(model, images[i:i + self.chunk_size], labels[i:i + self.chunk_size])
                             for i in range(0, len(images), self.chunk_size)])

    def run_chunk(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> AutoAttackResult:
        """The evaluation of one chunk (at most ``chunk_size`` points); join the chunks with :meth:`combine`."""
        with eval_mode(model), fixed_weights(model):  # pruning masks: W * M computed once for the whole chunk
            return self._run(model, images.detach(), labels)

    def combine(self, parts: Sequence[AutoAttackResult]) -> AutoAttackResult:
        """One result for consecutive chunks, in order, with the official Square check on the whole set."""
        if not parts:
            raise HarpError("AutoAttack was given no points; evaluate a non-empty split")
        sizes = [len(part.robust) for part in parts]
        total = max(sum(sizes), 1)

        def overall(values: list[float]) -> float:  # chunk accuracies weighted by chunk size
            return sum(value * size for value, size in zip(values, sizes, strict=True)) / total

        components = {name: overall([part.components[name] for part in parts]) for name in parts[0].components}
        clean_acc = overall([part.clean_acc for part in parts])
        collector = _Collector()
        for part in parts:
            collector.flags.extend(f for f in part.flags if f not in collector.flags)
        _, _, _, checks = _pyautoattack()
        logger = logging.getLogger("auto-attack")  # the official code's logger, as in _run
        with _official_run(logger, collector):
            checks.check_square_sr({"clean": clean_acc, **components}, logger=logger)
        examples = [part.adversarial for part in parts if part.adversarial is not None]
        adversarial = torch.cat(examples) if len(examples) == len(parts) else None
        resumed = {name for part in parts for name in part.resumed_from}
        return AutoAttackResult(adversarial, torch.cat([part.robust for part in parts]), clean_acc, components,
                                list(collector.flags), [name for name in components if name in resumed],
                                [file for part in parts for file in part.state_files])

    def _run(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> AutoAttackResult:
        _, Official, _, checks = _pyautoattack()
        official = Official(model, attacks=self.components or None, device=images.device, eps=self.eps,
                            norm=NORMS[self.norm], seed=self.seed, version=self.version)
        components = list(official.attacks_to_run)
        settings = {"eps": self.eps, "norm": self.norm, "version": self.version, "components": components,
                    "seed": self.seed}
        state_file = None
        state: dict[str, Any] = {}
        if self.state_dir is not None:
            state_file = self.state_dir / f"autoattack-{_fingerprint(model, images, labels, settings)}.json"
            if state_file.exists():
                state = json.loads(state_file.read_text())
        adversarial = images.clone()
        if state:
            robust = torch.tensor(state["robust"], dtype=torch.bool, device=images.device)
        else:
            with torch.no_grad():
                predicted = torch.cat([model(images[i:i + self.batch_size]).argmax(1)
                                       for i in range(0, len(images), self.batch_size)])
            robust = predicted == labels
            state = {"settings": settings, "clean_acc": float(robust.double().mean()), "done": [], "components": {},
                     "flags": []}
        resumed_from = list(state["done"])
        collector = _Collector()
        collector.flags.extend(state["flags"])
        if not resumed_from:  # the official checks, as run_standard_evaluation runs them, even if nothing is robust
            with _official_run(official.logger, collector):
                self._checks(official, checks, images, labels, components)
        for component in components:
            if component in state["done"]:
                continue
            index = robust.nonzero().flatten()
            if len(index):
                official.attacks_to_run = [component]  # keeps the version's settings for this component
                with _official_run(official.logger, collector):
                    x_adv, _ = official.run_standard_evaluation(images[index], labels[index],
                                                                batch_size=self.batch_size)
                with torch.no_grad():
                    fooled = torch.cat([model(x_adv[i:i + self.batch_size]).argmax(1)
                                        for i in range(0, len(x_adv), self.batch_size)]) != labels[index]
                robust[index[fooled]] = False
                adversarial[index[fooled]] = x_adv[fooled]
            state["done"].append(component)
            state["components"][component] = float(robust.double().mean())
            state["robust"] = robust.cpu().tolist()
            state["flags"] = collector.flags
            if state_file is not None:
                _write_state(state, state_file)
        return AutoAttackResult(adversarial, robust, state["clean_acc"], dict(state["components"]),
                                list(collector.flags), resumed_from, [str(state_file)] if state_file else [])

    def _checks(self, official, checks, images: torch.Tensor, labels: torch.Tensor, components: list[str]) -> None:
        x, y, bs = images[:self.batch_size], labels[:self.batch_size], self.batch_size
        if self.version != "rand":
            checks.check_randomized(official.get_logits, x, y, bs=bs, logger=official.logger)
        n_classes = checks.check_range_output(official.get_logits, x, logger=official.logger)
        checks.check_dynamic(official.model, x, False, logger=official.logger)
        checks.check_n_classes(n_classes, components, official.apgd_targeted.n_target_classes,
                               official.fab.n_target_classes, logger=official.logger)


def _write_state(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


