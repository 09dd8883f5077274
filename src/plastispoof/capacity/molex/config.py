"""What the ``molex`` transform and strategy are configured with (validated pydantic options)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from plastispoof.capacity.base import StrategyOptions

Routing = Literal["token", "utterance"]


class MoLExOptions(StrategyOptions):
    """What the ``molex`` transform builds. With ``add_experts`` the structure options come from the model."""

    num_experts: int = Field(4, gt=0, description="experts per wrapped layer")
    rank: int = Field(8, gt=0, description="rank of each LoRA expert")
    alpha: float = Field(16.0, gt=0, description="expert scaling numerator (scale = alpha / rank)")
    top_k: int | None = Field(None, gt=0, description="experts kept per token (renormalised); None = all")
    routing: Routing = Field("token", description="route each token, or each utterance (mean over time)")
    targets: list[str] = Field(["q_proj", "v_proj"], min_length=1,
                               description="last names of the SSL encoder's linear layers to wrap: q_proj, "
                                           "k_proj, v_proj, out_proj, intermediate_dense, output_dense")
    orth_weight: float = Field(0.01, ge=0, description="weight of the orthogonality regulariser (per layer)")
    balance_weight: float = Field(0.0, ge=0, description="weight of the load-balancing loss (per layer)")
    add_experts: int = Field(0, ge=0, description="on a MoLEx model: add this many experts per layer and "
                                                  "train only them, the routers and (optionally) the head")
    train_head: bool = Field(True, description="train the parameters outside the SSL encoder")

    @model_validator(mode="after")
    def _top_k_fits(self) -> "MoLExOptions":
        if self.top_k is not None and self.top_k > self.num_experts + self.add_experts:
            raise ValueError(f"top_k {self.top_k} exceeds the {self.num_experts + self.add_experts} experts")
        return self



class MoLExStrategyOptions(MoLExOptions):
    baseline_run: str | None = Field(None, description="start from this finished run's weights; with "
                                                       "add_experts it must be a MoLEx run")

    @model_validator(mode="after")
    def _adaptation_has_a_baseline(self) -> "MoLExStrategyOptions":
        if self.add_experts and not self.baseline_run:
            raise ValueError("add_experts needs baseline_run (a finished MoLEx run)")
        return self
