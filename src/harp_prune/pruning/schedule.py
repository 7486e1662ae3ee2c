"""The step-wise γ schedule: γ_e = (e + 1) γ0, frozen for good at the first epoch that meets the budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harp_prune.errors import HarpError


@dataclass
class GammaSchedule:
    """docs/method.md, 'The γ schedule': ramp γ by γ0 per epoch; freeze it once the end-of-epoch L_hw rounds to 0.

    ``frozen`` holds the γ in force once the target was first reached; it is never unfrozen.
    """

    gamma0: float = 0.01
    frozen: float | None = None
    reached_epoch: int | None = None

    def __post_init__(self) -> None:
        if not self.gamma0 >= 0:
            raise HarpError(f"gamma0 must be >= 0 (the per-epoch step of the size loss weight, e.g. 0.01), "
                            f"got {self.gamma0}")

    def gamma(self, epoch: int) -> float:
        """γ for (0-based) ``epoch``; constant within the epoch."""
        return self.frozen if self.frozen is not None else (epoch + 1) * self.gamma0

    @property
    def reached(self) -> bool:
        return self.frozen is not None

    def end_epoch(self, epoch: int, size_loss: float) -> None:
        """Record the end-of-epoch size loss; freeze γ the first time it rounds (4 decimals) to 0."""
        if self.frozen is None and round(size_loss, 4) == 0:
            self.frozen = self.gamma(epoch)
            self.reached_epoch = epoch

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.gamma0, self.frozen, self.reached_epoch = state["gamma0"], state["frozen"], state["reached_epoch"]
