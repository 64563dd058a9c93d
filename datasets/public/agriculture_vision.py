"""Agriculture-Vision (2020 and 2021 challenge releases): aerial RGB + NIR farmland tiles from the US Midwest.

Layout, as the publishers ship it (the 2020 challenge ``Agriculture-Vision.tar.gz``; the 2021 supervised set
``aws s3 cp s3://intelinair-data-releases/agriculture-vision/cvpr_challenge_2021/supervised ...``, also on
Hugging Face as ``shi-labs/Agriculture-Vision``, ``Agriculture-Vision-2021.tar.gz``)::

    ROOT/{train,val,test}/images/rgb/FIELD_x1-y1-x2-y2.jpg    3-band JPEG, R G B
    ROOT/{train,val,test}/images/nir/FIELD_x1-y1-x2-y2.jpg    1-band JPEG, near infrared
    ROOT/{train,val,test}/boundaries/FIELD_x1-y1-x2-y2.png    255 inside the field, 0 outside
    ROOT/{train,val,test}/masks/FIELD_x1-y1-x2-y2.png         255 valid pixel, 0 invalid (no imagery)
    ROOT/{train,val}/labels/CLASS/FIELD_x1-y1-x2-y2.png       255 where the pattern is, 0 elsewhere

Tiles are 512 x 512 px. FIELD identifies the farmland a tile was cut from and (x1, y1, x2, y2) where; tiles of
one field are held out together. Class masks are separate binary files "due to potential overlaps between
patterns". Sources checked: the 2020 challenge README (github.com/SHI-Labs/Agriculture-Vision: 21,061 images,
"four 512x512 color channels, which are RGB and Near Infra-red (NIR)", "The boundary map indicates the region of
the farmland, and the mask indicates valid pixels in the image. Regions outside of either the boundary map or the
mask are not evaluated", the file-name format, and the class order 0 background, 1 cloud_shadow, 2 double_plant,
3 planter_skip, 4 standing_water, 5 waterway, 6 weed_cluster); the 2021 challenge page
(agriculture-vision.com: 8 patterns + background); the 2021 class folders and the ``== 255`` encodings of
boundaries, masks and labels as a 2021 challenge entry reads them (github.com/wufanyou/WRL-Agriculture-Vision,
``utils/dataset.py``: double_plant, drydown, endrow, nutrient_deficiency, planter_skip, water, waterway,
weed_cluster; the NIR JPEG read as one channel). Some 2021 copies also hold ``labels/storm_damage``, which the
challenge did not evaluate: its pixels are ignored here rather than called background.

Ground resolution: "as high as 10 cm per pixel" (Chiu et al., CVPR 2020, arXiv:2001.01306); the publisher's
2021 and 2022 challenge pages (agriculture-vision.com), which serve the 2021 supervised set, say the same of it:
"RGB-NIR aerial images of farmlands across the US captured between 2017 and 2019 with a resolution of up to
10 cm/pixel". 10 cm is the default here. Neither the tiles nor the publisher give a per-tile GSD ("up to" means
some tiles are coarser), so give ``agriculture-vision@0.15:PATH`` where you know your copy's value.

Labels here: 0 background, 1..K the patterns in the published order; a pixel with two or more patterns is
ignored (255), since cross-entropy can reward only one answer where the official metric accepts either; pixels
outside the field boundary or the valid mask are ignored. For poppy negatives every pixel inside the boundary and
the valid mask counts (a Midwest field holds no opium poppy).

Licence: the Agriculture-Vision terms and conditions shipped with the archive; non-commercial research use only.
Cite Chiu et al., "Agriculture-Vision: A Large Aerial Image Database for Agricultural Pattern Analysis", CVPR 2020.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from core.errors import InputError
from datasets.public.base import IGNORE, SPLITS, PublicDataset, PublicTile, TileRead, read_image, read_layer

__all__ = ["CLASSES_2020", "CLASSES_2021", "AgricultureVision"]

CLASSES_2020 = (
    "background", "cloud_shadow", "double_plant", "planter_skip", "standing_water", "waterway", "weed_cluster",
)  # fmt: skip
CLASSES_2021 = (
    "background", "double_plant", "drydown", "endrow", "nutrient_deficiency", "planter_skip", "water", "waterway",
    "weed_cluster",
)  # fmt: skip
IGNORED_PATTERNS = ("storm_damage",)  # present in some 2021 copies, not evaluated by the challenge
TILE = 512


def _names(folder: Path, suffix: str) -> set[str]:
    """Stems of the files with ``suffix`` in a folder (one listdir: fast even for 50 000 tiles)."""
    if not folder.is_dir():
        return set()
    return {n[: -len(suffix)] for n in os.listdir(folder) if n.endswith(suffix)}


class AgricultureVision(PublicDataset):
    """Agriculture-Vision 2020 or 2021 (the version is recognised from the class folders under ``labels/``).

    Args:
        root: The extracted folder holding ``train/``, ``val/``, ``test/`` (or one split folder itself, or a
            folder with exactly one such release inside).
        gsd_m: Ground resolution to assume instead of 10 cm/px.
        nir: Also read the NIR band (as a 4th image band: R, G, B, NIR). The poppy model is RGB, so training
            leaves it off.

    Raises:
        InputError: If the folder is not in the published layout.
    """

    name = "agriculture-vision"
    title = "Agriculture-Vision"
    licence = "Agriculture-Vision terms and conditions: non-commercial research use only"
    source = "https://www.agriculture-vision.com, https://github.com/SHI-Labs/Agriculture-Vision"
    nominal_gsd_m = 0.10
    group_kind = "fields"

    def __init__(self, root: str | Path, *, gsd_m: float | None = None, nir: bool = False) -> None:
        super().__init__(root, gsd_m=gsd_m)
        self.nir = nir
        self._dirs = self._find_splits(self.root)
        found = set()
        for d in self._dirs.values():
            labels = d / "labels"
            if labels.is_dir():
                found |= {p.name for p in labels.iterdir() if p.is_dir()}
        patterns = found - set(IGNORED_PATTERNS)
        if not patterns:
            self.classes, self.version = (), "unlabelled"
        elif set(CLASSES_2021[1:]) <= patterns:
            self.classes, self.version = CLASSES_2021, "2021"
        elif set(CLASSES_2020[1:]) <= patterns:
            self.classes, self.version = CLASSES_2020, "2020"
        else:
            raise InputError(
                f"{self.name}:{root}: labels/ holds {', '.join(sorted(found))}; expected the 2021 classes "
                f"({', '.join(CLASSES_2021[1:])}) or the 2020 ones ({', '.join(CLASSES_2020[1:])})"
            )
        self.ignored = tuple(p for p in IGNORED_PATTERNS if p in found)
        self.title = f"Agriculture-Vision {self.version}"

    @classmethod
    def _find_splits(cls, root: Path) -> dict[str, Path]:
        def is_split(d: Path) -> bool:
            return (d / "images" / "rgb").is_dir()

        if is_split(root):  # a split folder itself
            return {root.name if root.name in SPLITS else "train": root}
        for base in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
            dirs = {s: base / s for s in SPLITS if is_split(base / s)}
            if dirs:
                return dirs
        raise InputError(
            f"{cls.name}:{root}: not an Agriculture-Vision folder; expected train/images/rgb/*.jpg, "
            "train/boundaries/*.png, train/masks/*.png and train/labels/CLASS/*.png as in the published archive"
        )

    def splits(self) -> dict[str, bool]:
        return {s: (d / "labels").is_dir() and bool(self.classes) for s, d in self._dirs.items()}

    def tiles(self, split: str) -> list[PublicTile]:
        if split not in self._dirs:
            raise InputError(f"{self.name}:{self.root}: has no {split}/ split (found: {', '.join(self._dirs)})")
        d = self._dirs[split]
        stems = sorted(_names(d / "images" / "rgb", ".jpg"))
        if not stems:
            raise InputError(f"{d / 'images' / 'rgb'}: holds no .jpg tiles; re-extract the archive")
        needed = [("boundary", d / "boundaries", ".png"), ("mask", d / "masks", ".png")]
        if self.nir:
            needed.append(("nir", d / "images" / "nir", ".jpg"))
        if self.splits()[split]:
            needed += [(c, d / "labels" / c, ".png") for c in (*self.classes[1:], *self.ignored)]
        for role, folder, suffix in needed:
            missing = sorted(set(stems) - _names(folder, suffix))
            if missing:
                raise InputError(
                    f"{folder / (missing[0] + suffix)}: missing ({len(missing)} of {len(stems)} tiles lack their "
                    f"{role} file); re-extract the archive"
                )
        gsd = float(self.gsd_m or self.nominal_gsd_m)
        out = []
        for s in stems:
            files = [("rgb", str(d / "images" / "rgb" / f"{s}.jpg"))]
            files += [(role, str(folder / f"{s}{suffix}")) for role, folder, suffix in needed]
            out.append(PublicTile(f"{split}/{s}", split, s.split("_")[0], gsd, TILE, TILE, tuple(files)))
        return out

    def read(self, tile: PublicTile, window: Window, out_shape: tuple[int, int], *, classes: bool = True) -> TileRead:
        image, present = read_image(tile.file("rgb"), (1, 2, 3), window, out_shape)
        if self.nir:
            nir, nir_present = read_image(tile.file("nir"), (1,), window, out_shape)
            image, present = np.concatenate([image, nir]), present & nir_present
        has_data = present & (read_layer(tile.file("mask"), window, out_shape) > 0)
        valid = has_data & (read_layer(tile.file("boundary"), window, out_shape) > 0)
        image[:, ~has_data] = 0  # outside the field is still imagery; only missing imagery is blanked
        labels = None
        if classes:
            if not self.classes or tile.split not in self.labelled_splits():
                raise InputError(f"{tile.file('rgb')}: the {tile.split} split has no labels; pretrain on train/val")
            masks = np.stack([read_layer(tile.file(c), window, out_shape) > 0 for c in self.classes[1:]])
            count = masks.sum(axis=0)
            labels = np.where(count == 0, 0, np.argmax(masks, axis=0) + 1).astype(np.uint8)
            labels[count > 1] = IGNORE  # overlapping patterns: either answer is right, cross-entropy takes one
            for c in self.ignored:
                labels[read_layer(tile.file(c), window, out_shape) > 0] = IGNORE
            labels[~valid] = IGNORE
        return TileRead(image, valid, labels)
