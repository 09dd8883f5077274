"""Countermeasure models. Each file registers its models in :data:`plastispoof.registry.MODELS`."""

from plastispoof.models.base import GrowthSite, SpoofModel, build_model

__all__ = ["GrowthSite", "SpoofModel", "build_model"]
