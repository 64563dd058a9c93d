"""Materials: one small class per surface, registered by name (see :mod:`.base`)."""

from datasets.scene.materials import built, crops, ground, plastic, poppy, trees  # noqa: F401  (registers)
from datasets.scene.materials.base import MATERIALS, Material, Surface, register

__all__ = ["MATERIALS", "Material", "Surface", "register"]
