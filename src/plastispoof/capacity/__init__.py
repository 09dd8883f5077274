"""Capacity-adaptive training methods. Each is a :class:`~plastispoof.capacity.base.Strategy` that turns one
run into stages, plus the :class:`~plastispoof.capacity.base.Transform` s it applies to a model."""

from plastispoof.capacity.base import OptionsTransform, Stage, Strategy, Transform, apply_transforms, build_strategy

__all__ = ["OptionsTransform", "Stage", "Strategy", "Transform", "apply_transforms", "build_strategy"]
