"""LoveDA: Google Earth land-cover tiles of rural and urban Nanjing, Changzhou and Wuhan (China) at 0.3 m.

Layout, as the publishers ship it (``Train.zip``, ``Val.zip``, ``Test.zip`` on Zenodo record 5706578, or the
authors' Google Drive folder)::

    ROOT/{Train,Val,Test}/{Rural,Urban}/images_png/N.png    3-band PNG, R G B, 1024 x 1024
    ROOT/{Train,Val}/{Rural,Urban}/masks_png/N.png          1-band PNG, same name, class per pixel

Mask values: 0 no-data (ignored), 1 background, 2 building, 3 road, 4 water, 5 barren, 6 forest, 7 agriculture;
here they become class ids 0..6 in that order and 0 becomes 255. The test split has no masks: its no-data is
unknown, so it serves neither pretraining nor negatives. Sources checked: the authors' README
(github.com/Junjue-Wang/LoveDA: "5927 high spatial resolution (0.3 m) remote sensing images from Nanjing,
Changzhou, and Wuhan", licence CC BY-NC-SA 4.0) and torchgeo's reader (``torchgeo/datasets/loveda.py``: the
``Train/Rural/images_png/*.png`` layout with masks under ``masks_png`` by the same name, 1024x1024 three-channel
images, single-channel masks, classes 1-7 and "No-data regions assigned with 0 and should be ignored").

At 0.3 m a 3 cm model sees each source pixel upsampled 10x: LoveDA teaches layout and colour (fields, roads,
villages, water), not texture. The rural domain (``loveda-rural``) is the closer match to poppy country; its
fields are in China's wheat and rice belt.

Licence: CC BY-NC-SA 4.0 (non-commercial, share-alike). Cite Wang et al., "LoveDA: A Remote Sensing Land-Cover
Dataset for Domain Adaptive Semantic Segmentation", NeurIPS 2021 Datasets and Benchmarks.
"""

from __future__ import annotations

import os
from pathlib import Path

from rasterio.windows import Window

from core.errors import InputError
from datasets.public.base import IGNORE, PublicDataset, PublicTile, TileRead, class_lut, read_image, read_layer

__all__ = ["CLASSES", "DOMAINS", "LoveDA"]

CLASSES = ("background", "building", "road", "water", "barren", "forest", "agriculture")
DOMAINS = ("Rural", "Urban")
_SPLIT_DIRS = {"Train": "train", "Val": "val", "Test": "test"}
_LUT = class_lut({v: v - 1 for v in range(1, 8)})  # 0 (no-data) and anything unexpected -> 255
TILE = 1024


class LoveDA(PublicDataset):
    """LoveDA, both domains or one.

    Args:
        root: The folder holding ``Train/``, ``Val/``, ``Test/`` (or one of them, or one domain folder).
        gsd_m: Ground resolution to assume instead of 0.3 m/px.
        domains: ``("Rural", "Urban")`` or one of them.

    Raises:
        InputError: If the folder is not in the published layout or holds none of the domains asked for.
    """

    name = "loveda"
    title = "LoveDA"
    licence = "CC BY-NC-SA 4.0 (non-commercial, share-alike)"
    source = "https://github.com/Junjue-Wang/LoveDA, https://zenodo.org/records/5706578"
    nominal_gsd_m = 0.30

    def __init__(self, root: str | Path, *, gsd_m: float | None = None, domains: tuple[str, ...] = DOMAINS) -> None:
        super().__init__(root, gsd_m=gsd_m)
        self.classes = CLASSES
        self.domains = domains
        # split -> [(domain, folder holding images_png)]
        self._dirs: dict[str, list[tuple[str, Path]]] = {}
        root_p = self.root
        if (root_p / "images_png").is_dir():  # one domain of one split
            split = _SPLIT_DIRS.get(root_p.parent.name, "train")
            self._dirs[split] = [(root_p.name, root_p)]
        else:
            bases = {_SPLIT_DIRS[root_p.name]: root_p} if root_p.name in _SPLIT_DIRS else {}
            bases = bases or {s: root_p / d for d, s in _SPLIT_DIRS.items() if (root_p / d).is_dir()}
            for split, base in bases.items():
                found = [(dom, base / dom) for dom in domains if (base / dom / "images_png").is_dir()]
                if found:
                    self._dirs[split] = found
        if not self._dirs:
            raise InputError(
                f"{self.name}:{root}: not a LoveDA folder with the {'/'.join(domains)} domain; expected "
                "Train/Rural/images_png/*.png and Train/Rural/masks_png/*.png as in the published Train.zip"
            )
        self.title = "LoveDA " + "+".join(sorted({d for v in self._dirs.values() for d, _ in v}))

    def splits(self) -> dict[str, bool]:
        return {s: all((d / "masks_png").is_dir() for _, d in v) for s, v in self._dirs.items()}

    def negative_splits(self) -> list[str]:
        # No-data lives in the masks: an unlabelled split cannot say which pixels are real imagery.
        return self.labelled_splits()

    def tiles(self, split: str) -> list[PublicTile]:
        if split not in self._dirs:
            raise InputError(f"{self.name}:{self.root}: has no {split} split (found: {', '.join(self._dirs)})")
        labelled = self.splits()[split]
        gsd = float(self.gsd_m or self.nominal_gsd_m)
        out = []
        for domain, d in self._dirs[split]:
            names = sorted(n for n in os.listdir(d / "images_png") if n.lower().endswith(".png"))
            if labelled:
                masks = set(os.listdir(d / "masks_png"))
                missing = [n for n in names if n not in masks]
                if missing:
                    raise InputError(
                        f"{d / 'masks_png' / missing[0]}: missing ({len(missing)} of {len(names)} tiles lack their "
                        "mask); re-extract the archive"
                    )
            for n in names:
                files = [("image", str(d / "images_png" / n))]
                if labelled:
                    files.append(("mask", str(d / "masks_png" / n)))
                key = f"{split}/{domain}/{Path(n).stem}"
                out.append(PublicTile(key, split, key, gsd, TILE, TILE, tuple(files)))
        if not out:
            raise InputError(f"{self.name}:{self.root}: the {split} split holds no .png tiles; re-extract it")
        return out

    def read(self, tile: PublicTile, window: Window, out_shape: tuple[int, int], *, classes: bool = True) -> TileRead:
        image, present = read_image(tile.file("image"), (1, 2, 3), window, out_shape)
        if len(tile.files) < 2:
            raise InputError(f"{tile.file('image')}: the {tile.split} split has no masks; use Train or Val")
        labels = _LUT[read_layer(tile.file("mask"), window, out_shape)]
        labels[~present] = IGNORE
        valid = labels != IGNORE
        image[:, ~present] = 0
        return TileRead(image, valid, labels if classes else None)
