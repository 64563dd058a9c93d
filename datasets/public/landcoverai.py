"""LandCover.ai v1: aerial orthophotos of Poland at 25 and 50 cm with building, woodland, water and road masks.

Layout, as the publishers ship it (``landcover.ai.v1.zip``)::

    ROOT/images/NAME.tif    3-band GeoTIFF, R G B, EPSG:2180, ~9000 x 9500 px at 25 cm or ~4200 x 4700 at 50 cm
    ROOT/masks/NAME.tif     1-band GeoTIFF on the same grid: 0 background, 1 building, 2 woodland, 3 water, 4 road
    ROOT/split.py, train.txt, val.txt, test.txt   (lists of the 512 px chips split.py cuts into output/; unused)

The whole orthophotos are read window by window (never the 512 px chips), so the GSD comes from each file's own
georeferencing, measured geodesically like any orthomosaic (:func:`detect.raster.inspect_raster`), and
validation holds out whole orthophotos. Sources checked: torchgeo's readers (``torchgeo/datasets/landcoverai.py``:
"33 orthophotos with 25 cm per pixel resolution (~9000x9500 px)", "8 orthophotos with 50 cm per pixel resolution
(~4200x4700 px)", "rasters are three-channel GeoTiffs with EPSG:2180", "masks are single-channel GeoTiffs", the
``images/*.tif`` and ``masks/*.tif`` layout with masks found by replacing ``images`` with ``masks``, and the
classes background, building, woodland, water, road); the dataset card on Hugging Face (licence cc-by-nc-sa-4.0).

Licence: CC BY-NC-SA 4.0 (non-commercial, share-alike); imagery from Poland's Head Office of Geodesy and
Cartography. Cite Boguszewski et al., "LandCover.ai: Dataset for Automatic Mapping of Buildings, Woodlands,
Water and Roads from Aerial Imagery", arXiv:2005.02264.
"""

from __future__ import annotations

from pathlib import Path

from rasterio.windows import Window

from core.errors import InputError
from datasets.public.base import IGNORE, PublicDataset, PublicTile, TileRead, class_lut, read_image, read_layer
from detect.raster import inspect_raster, open_raster

__all__ = ["CLASSES", "LandCoverAI"]

CLASSES = ("background", "building", "woodland", "water", "road")
_LUT = class_lut({v: v for v in range(len(CLASSES))})


class LandCoverAI(PublicDataset):
    """LandCover.ai v1 orthophotos (one ``train`` split; validation holds out whole orthophotos).

    Args:
        root: The extracted folder holding ``images/`` and ``masks/``.
        gsd_m: Ground resolution to assume instead of each file's own.

    Raises:
        InputError: If the folder is not in the published layout, or a mask's grid differs from its image's.
    """

    name = "landcover.ai"
    title = "LandCover.ai v1"
    licence = "CC BY-NC-SA 4.0 (non-commercial, share-alike)"
    source = "https://landcover.ai.linuxpolska.com, arXiv:2005.02264"
    nominal_gsd_m = None  # 0.25 or 0.5 m, read from each GeoTIFF
    group_kind = "orthophotos"

    def __init__(self, root: str | Path, *, gsd_m: float | None = None) -> None:
        super().__init__(root, gsd_m=gsd_m)
        self.classes = CLASSES
        self._images = sorted((self.root / "images").glob("*.tif")) if (self.root / "images").is_dir() else []
        if not self._images or not (self.root / "masks").is_dir():
            raise InputError(
                f"{self.name}:{root}: not a LandCover.ai folder; expected images/NAME.tif and masks/NAME.tif as in "
                "the published landcover.ai.v1.zip"
            )
        self._tiles: list[PublicTile] | None = None

    def splits(self) -> dict[str, bool]:
        return {"train": True}

    def tiles(self, split: str) -> list[PublicTile]:
        if split != "train":
            raise InputError(f"{self.name}:{self.root}: has one split (train); validation holds out orthophotos")
        if self._tiles is None:
            tiles = []
            for image in self._images:
                mask = self.root / "masks" / image.name
                if not mask.is_file():
                    raise InputError(f"{mask}: missing (the mask of {image.name}); re-extract the archive")
                with open_raster(image) as ds:
                    info = inspect_raster(ds)
                with open_raster(mask) as m:
                    if (m.height, m.width) != (info.height, info.width):
                        raise InputError(
                            f"{mask}: {m.width}x{m.height} px but its image is {info.width}x{info.height}; "
                            "re-extract the archive"
                        )
                gsd = self.gsd_override or info.mean_gsd_m
                files = (("image", str(image)), ("mask", str(mask)))
                key = f"train/{image.stem}"
                tiles.append(PublicTile(key, "train", image.stem, gsd, info.height, info.width, files, info.rgb_bands))
            self._tiles = tiles
        return list(self._tiles)

    def read(self, tile: PublicTile, window: Window, out_shape: tuple[int, int], *, classes: bool = True) -> TileRead:
        image, present = read_image(tile.file("image"), tile.rgb_bands, window, out_shape)
        labels = _LUT[read_layer(tile.file("mask"), window, out_shape)]
        labels[~present] = IGNORE
        return TileRead(image, labels != IGNORE, labels if classes else None)
