"""Real aerial and drone imagery with no opium poppy: ``real-negatives:PATH``, with a fixed train/test split.

``PATH`` is the folder described by ``../shared/data/real/negatives/README.md`` (files from public repositories,
each with its source and licence there). Every valid pixel of these files is a poppy-free negative from a real
camera, so they serve two purposes that must never share a file:

- **train** (``negative_tiles()``, what ``train.py --negatives real-negatives:PATH`` mixes into training);
- **test** (``tiles("test")``, what ``bench/generalisation.py`` scores as false area per hectare and pastes
  rendered poppy plots into for its real composites).

The split is fixed by file name (:data:`SPLIT`), not drawn, so it is the same in every run, on every machine and
for every model; a file in the folder that :data:`SPLIT` does not name is refused rather than guessed. Test files
were chosen to cover what a detector gets wrong in villages and parks (roofs, cars, roads, parking lots, a sand
arena) within or near the model's working resolution; training keeps every scene kind too::

    test   brighton_beach_mn_park_DJI_0024.JPG            park road, lawn islands, car, picnic tables   1.80 cm
           garfield_oh_park_IMG_161122_163234_0000_RGB.JPG parking lot with stalls, road, autumn trees   3 cm
           lewis_oh_meadow_img_4116.jpg                   sand horse arena, fence, shed, meadow          2.5 cm
           manila_ph_river_roads_oam_10cm_3395.tif        city river, bridge, roads, roofs, cars         9.7 cm
           freetown_sl_settlement_example.jpg             corrugated roofs, laterite soil               12.5 cm
    train  brighton_beach_mn_park_DJI_0021.JPG, _0030.JPG  forest, park roads, lawn, lake shore          1.80 cm
           garfield_oh_park_..._0092_RGB.JPG, _0170_RGB.JPG autumn woodland, paths, lawn                 3 cm
           lewis_oh_meadow_img_4074.jpg                   mown meadow, tree line                         2.5 cm
           decatur_ar_farm_fisheye_FHD0150.JPG, _FHD0411.JPG winter farmstead, red roof, pasture (fisheye) 1.25 cm
           osbs_fl_pine_savanna_neon_10cm_utm17.tif       pine savanna, grass, sand                     10 cm
           decatur_ar_farm_ortho_preview.png              farm orthophoto preview                       25 cm
           aukerman_oh_park_ortho_preview.png             park orthophoto preview                       50 cm
           agung_id_hillside_village_example.jpg          hillside village, metal roofs                 15 cm

**Ground sample distance, per file.** GeoTIFFs: measured geodesically from the file's transform at its centre
(:func:`detect.raster.inspect_raster`). DJI frames: from the XMP ``drone-dji:RelativeAltitude`` and the camera,
``altitude * 36 mm / (focal_35mm * image_width)`` (the 35 mm-equivalent focal length in EXIF stands for a 36 mm
wide sensor): 40.1 m, 20 mm, 4000 px give 1.80 cm. Other frames carry no height above ground (EXIF altitude is
above sea level), so the value stated in the folder's README (estimated from parking stalls, roads and cars) is
used (:data:`STATED_GSD_M`). Oblique and fisheye frames have no single scale; their stated centre value is used.

Licences are per file (MIT, BSD-2-Clause, CC0, CC BY 4.0; see the folder's README and ``LICENSES/``); CC BY
imagery needs credit to OpenAerialMap contributors and spwoodcock/HOT when a trained model is published.
"""

from __future__ import annotations

import re
from pathlib import Path

from rasterio.windows import Window

from core.errors import InputError
from datasets.public.base import PublicDataset, PublicTile, TileRead, open_tile_file, read_image
from detect.raster import inspect_raster

__all__ = ["SPLIT", "STATED_GSD_M", "RealNegatives", "frame_gsd_m", "xmp_relative_altitude"]

# The fixed split (see the module docstring). Test files are never used for training.
SPLIT: dict[str, str] = {
    "brighton_beach_mn_park_DJI_0024.JPG": "test",
    "garfield_oh_park_IMG_161122_163234_0000_RGB.JPG": "test",
    "lewis_oh_meadow_img_4116.jpg": "test",
    "manila_ph_river_roads_oam_10cm_3395.tif": "test",
    "freetown_sl_settlement_example.jpg": "test",
    "brighton_beach_mn_park_DJI_0021.JPG": "train",
    "brighton_beach_mn_park_DJI_0030.JPG": "train",
    "garfield_oh_park_IMG_161122_164155_0092_RGB.JPG": "train",
    "garfield_oh_park_IMG_161122_165115_0170_RGB.JPG": "train",
    "lewis_oh_meadow_img_4074.jpg": "train",
    "decatur_ar_farm_fisheye_FHD0150.JPG": "train",
    "decatur_ar_farm_fisheye_FHD0411.JPG": "train",
    "osbs_fl_pine_savanna_neon_10cm_utm17.tif": "train",
    "decatur_ar_farm_ortho_preview.png": "train",
    "aukerman_oh_park_ortho_preview.png": "train",
    "agung_id_hillside_village_example.jpg": "train",
}
# GSD stated in the folder's README for files that carry neither a transform nor a height above ground (metres;
# the middle of the README's range).
STATED_GSD_M: dict[str, float] = {
    "garfield_oh_park_IMG_161122_163234_0000_RGB.JPG": 0.03,
    "garfield_oh_park_IMG_161122_164155_0092_RGB.JPG": 0.03,
    "garfield_oh_park_IMG_161122_165115_0170_RGB.JPG": 0.03,
    "lewis_oh_meadow_img_4074.jpg": 0.025,
    "lewis_oh_meadow_img_4116.jpg": 0.025,
    "decatur_ar_farm_fisheye_FHD0150.JPG": 0.0125,
    "decatur_ar_farm_fisheye_FHD0411.JPG": 0.0125,
    "decatur_ar_farm_ortho_preview.png": 0.25,
    "aukerman_oh_park_ortho_preview.png": 0.5,
    "agung_id_hillside_village_example.jpg": 0.15,
    "freetown_sl_settlement_example.jpg": 0.125,
}
_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
_XMP_ALT = re.compile(rb"RelativeAltitude\s*=\s*\"([+-]?[0-9.]+)\"")
_SENSOR_35MM_WIDTH_MM = 36.0


def xmp_relative_altitude(path: str | Path) -> float | None:
    """Height above the take-off point in metres from a DJI frame's XMP (``drone-dji:RelativeAltitude``), or None.

    Only the first 256 KB are searched: DJI writes its XMP packet right after the EXIF block.
    """
    with open(path, "rb") as f:
        head = f.read(256 * 1024)
    m = _XMP_ALT.search(head)
    return float(m.group(1)) if m else None


def _focal_35mm(path: str | Path) -> float | None:
    from PIL import Image  # deferred: only frames need it

    with Image.open(path) as im:
        exif = im.getexif().get_ifd(0x8769)
    f = exif.get(0xA405)  # FocalLengthIn35mmFilm
    return float(f) if f else None


def frame_gsd_m(path: str | Path, width_px: int) -> float | None:
    """GSD of a nadir drone frame from its height above ground and 35 mm-equivalent focal length, or None.

    ``gsd = altitude * 36 mm / (focal_35mm * width_px)``: the 35 mm-equivalent focal length is the one a 36 mm
    wide sensor would need for the same field of view.
    """
    alt = xmp_relative_altitude(path)
    focal = _focal_35mm(path)
    if alt is None or focal is None or alt <= 0 or width_px <= 0:
        return None
    return alt * _SENSOR_35MM_WIDTH_MM / (focal * width_px)


class RealNegatives(PublicDataset):
    """The real poppy-free imagery folder, split into train and test files by :data:`SPLIT`.

    Args:
        root: The ``negatives/`` folder.
        gsd_m: A GSD to assume for every file instead of each file's own (rarely right; for experiments).

    Raises:
        InputError: If the folder holds no known file, or an image file the split does not name.
    """

    name = "real-negatives"
    title = "Real poppy-free aerial imagery"
    licence = "per file: MIT, BSD-2-Clause, CC0 1.0, CC BY 4.0 (see the folder's README.md and LICENSES/)"
    source = "../shared/data/real/negatives/README.md"
    nominal_gsd_m = None
    group_kind = "files"

    def __init__(self, root: str | Path, *, gsd_m: float | None = None) -> None:
        super().__init__(root, gsd_m=gsd_m)
        found = sorted(p.name for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
        unknown = [n for n in found if n not in SPLIT]
        if unknown:
            raise InputError(
                f"{self.name}:{root}: {unknown[0]} is not in the fixed train/test split; add it to SPLIT in "
                "datasets/public/real_negatives.py (as train or test) before using the folder"
            )
        self.files = [n for n in found if n in SPLIT]
        if not self.files:
            raise InputError(
                f"{self.name}:{root}: none of the known negatives is here; give the folder "
                "../shared/data/real/negatives"
            )
        self._tiles: dict[str, PublicTile] = {}

    def splits(self) -> dict[str, bool]:
        # No land-cover labels: usable as negatives only.
        return {s: False for s in ("train", "test") if any(SPLIT[n] == s for n in self.files)}

    def negative_splits(self) -> list[str]:
        # The test files are scored by bench/generalisation.py: training must never see them.
        return ["train"] if "train" in self.splits() else []

    def file_gsd_m(self, name: str) -> float:
        """The GSD of one file, metres per pixel (see the module docstring for where it comes from)."""
        if self.gsd_override is not None:
            return self.gsd_override
        path = self.root / name
        with open_tile_file(path) as ds:
            width = ds.width
            if ds.crs is not None and not ds.transform.is_identity:
                return float(inspect_raster(ds).mean_gsd_m)
        gsd = frame_gsd_m(path, width)
        if gsd is not None:
            return gsd
        if name in STATED_GSD_M:
            return STATED_GSD_M[name]
        raise InputError(f"{path}: no transform, no height above ground and no stated GSD; add it to STATED_GSD_M")

    def tile(self, name: str) -> PublicTile:
        """The tile of one file (``name`` as in :data:`SPLIT`)."""
        if name not in self._tiles:
            path = self.root / name
            with open_tile_file(path) as ds:
                h, w = ds.height, ds.width
            split = SPLIT[name]
            key = f"{split}/{Path(name).stem}"
            self._tiles[name] = PublicTile(key, split, key, self.file_gsd_m(name), h, w, (("image", str(path)),))
        return self._tiles[name]

    def tiles(self, split: str) -> list[PublicTile]:
        if split not in self.splits():
            raise InputError(f"{self.name}:{self.root}: has no {split} files (splits: {', '.join(self.splits())})")
        return [self.tile(n) for n in self.files if SPLIT[n] == split]

    def read(self, tile: PublicTile, window: Window, out_shape: tuple[int, int], *, classes: bool = True) -> TileRead:
        image, present = read_image(tile.file("image"), (1, 2, 3), window, out_shape)
        # PNG previews mark their outside with alpha; the Manila GeoTIFF has no mask and stores its outside as
        # pure black. Exact (0, 0, 0) in all three bands does not occur in real, JPEG-compressed imagery over more
        # than a few pixels, so it is read as "no imagery" in every file.
        valid = present & (image.max(axis=0) > 0)
        return TileRead(image, valid, None)
