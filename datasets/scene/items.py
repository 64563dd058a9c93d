"""Scene items (vector geometry plus a material name) and the land-cover legend."""

from __future__ import annotations

from dataclasses import dataclass, field

from shapely.geometry.base import BaseGeometry

__all__ = ["LANDCOVER", "LAYERS", "RANDOMISED_CLASSES", "Item"]

# Land-cover classes kept per pixel while drawing (written with --landcover, legend in the sidecar).
LANDCOVER = {
    0: "nodata",
    1: "bare_soil",
    2: "wheat",
    3: "corn",
    4: "vegetables",
    5: "garlic",
    6: "grass_weeds",
    7: "plastic",
    8: "road",
    9: "building",
    10: "courtyard_paved",
    11: "tree",
    12: "poppy",
    13: "confuser_flowers",
    14: "rapeseed",
    15: "vehicle",
    # Appended for randomised scenes (datasets.scene.randomise); older classes keep their numbers.
    16: "solar_panel",
    17: "flowering_weeds",
}
LC = {name: k for k, name in LANDCOVER.items()}
# Classes only randomised scenes draw: a level-0 scene's sidecar legend leaves them out (byte-identical files).
RANDOMISED_CLASSES = (16, 17)

# Drawing order: later layers paint over earlier ones.
LAYERS = {
    "parcel": 10,
    "bed": 15,
    "road": 20,
    "yard": 30,
    "garden": 35,
    "plot": 40,
    "object": 50,
    "roof": 60,
    "tree": 70,
    "shadow": 90,
}


@dataclass
class Item:
    """One thing in the scene.

    Attributes:
        material: Name in the material registry.
        geom: Polygon (or MultiPolygon) in scene metres (u east, v south).
        layer: Drawing order (see :data:`LAYERS`).
        seed: The item's seed: all its texture and plants are hashed from it.
        params: Material parameters drawn at layout time (plain values).
        height: Height in metres above ground, for cast shadows (0 = casts none).
    """

    material: str
    geom: BaseGeometry
    layer: int
    seed: int
    params: dict = field(default_factory=dict)
    height: float = 0.0
