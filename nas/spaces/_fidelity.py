"""A space's multi-fidelity rungs, declared with the space and read by the search's scheduler
(nas.search.fidelity), which sits above the spaces."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from nas.errors import ConfigError

__all__ = ["Fidelity"]


class Fidelity(BaseModel):
    """Rungs in training epochs, ascending; the last is full training."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rungs: list[int]
    reduction_factor: int = 3
    brackets: int = 1
    """Hyperband-style: bracket b starts at rung b, so some trials skip the cheapest (noisiest) rungs."""
    promote_after: int | None = None
    """Results a rung must hold before it promotes any trial (None: the reduction factor). A trial that arrives
    earlier stops and is continued later if it ranks among the top then; 1 promotes the first to arrive."""

    @model_validator(mode="after")
    def _check(self) -> Fidelity:
        if not self.rungs or any(r < 1 for r in self.rungs) or list(self.rungs) != sorted(set(self.rungs)):
            raise ValueError(f"rungs must be increasing epoch counts of at least 1, got {self.rungs}")
        if self.reduction_factor < 2:
            raise ValueError(f"reduction_factor must be at least 2 (keep the top 1/2 or fewer), "
                             f"got {self.reduction_factor}")
        if not 1 <= self.brackets <= len(self.rungs):
            raise ValueError(f"brackets must be between 1 and the number of rungs ({len(self.rungs)}), "
                             f"got {self.brackets}")
        if self.promote_after is not None and self.promote_after < 1:
            raise ValueError(f"promote_after must be at least 1 result, got {self.promote_after}")
        return self

    @property
    def min_results(self) -> int:
        return self.promote_after if self.promote_after is not None else self.reduction_factor

    @property
    def epochs(self) -> int:
        return self.rungs[-1]

    def bracket_of(self, trial_number: int) -> int:
        return trial_number % self.brackets

    def rungs_for(self, bracket: int) -> list[int]:
        return self.rungs[bracket:]

    def within(self, budget: int | None, where: str) -> Fidelity:
        """Checked against the epoch budget (`--epochs`, or the space's largest epoch count)."""
        if budget is not None and self.epochs > budget:
            raise ConfigError(f"{where}: rung {self.epochs} is above the epoch budget of {budget}; rungs must lie "
                              f"in 1..{budget} (lower the rungs or raise --epochs)")
        return self
