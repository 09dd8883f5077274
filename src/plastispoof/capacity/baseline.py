"""Plain training: one stage, every parameter trains."""

from __future__ import annotations

from plastispoof.capacity.base import Stage, Strategy
from plastispoof.registry import STRATEGIES


@STRATEGIES.register("baseline")
class Baseline(Strategy):
    name = "baseline"

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("baseline", epochs)]
