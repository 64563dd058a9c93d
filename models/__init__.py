"""Segmentation networks, their registry, and self-describing checkpoints.

Importing this package registers every network (one file each), so ``build_model`` knows them all.
"""

from models import fastunet as _fastunet  # noqa: F401  (registers "fastunet")
from models import unet as _unet  # noqa: F401  (registers "unet_resnet18", "unet_resnet34")
from models.registry import build_model, list_models, register_model

__all__ = ["build_model", "list_models", "register_model"]
