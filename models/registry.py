"""The registry of segmentation networks: a name for each, and one way to build any of them."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from core.errors import InputError

__all__ = ["build_model", "list_models", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that makes a builder available to :func:`build_model` under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = builder
        return builder

    return wrap


def list_models() -> list[str]:
    """Names of all registered networks, sorted."""
    return sorted(_REGISTRY)


def build_model(name: str, *, in_channels: int = 3, num_classes: int = 1, **arch_args: object) -> nn.Module:
    """Build a registered segmentation network.

    Args:
        name: Registered name, e.g. ``"unet_resnet34"`` or ``"fastunet"``.
        in_channels: Input bands (3 for RGB).
        num_classes: Output channels: 1 for a binary detector (one logit), else one per class.
        **arch_args: Network-specific options, stored in checkpoints so the same network can be rebuilt.

    Returns:
        A module mapping ``[B, in_channels, H, W]`` to logits ``[B, num_classes, H, W]`` for any H, W.

    Raises:
        InputError: If ``name`` is not registered; the message lists the valid names.
    """
    if name not in _REGISTRY:
        raise InputError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _REGISTRY[name](in_channels=in_channels, num_classes=num_classes, **arch_args)
