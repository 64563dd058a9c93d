"""Chips from public data sets at the model's GSD: land-cover pretraining chips and poppy-free negatives.

A chip is ``S x S`` pixels at the model's ground sample distance, whatever the tile's: a window of
``S * target_gsd / tile_gsd`` source pixels is read and resampled to ``S x S`` (the image bilinearly, the masks by
nearest neighbour). A 10 cm Agriculture-Vision tile read for a 3 cm model is upsampled 3.33x: a 256 px chip
covers 76.8 x 76.8 source pixels, 7.68 m on the ground, the same ground as a 256 px chip of a drone survey.

Two kinds of mask:

- ``labels="landcover"``: the data set's class ids ``0..K-1``, 255 where unlabelled or ambiguous (pretraining);
- ``labels="negative"``: 0 on every valid pixel (real imagery inside the annotated area, never the data set's
  poppy class), 255 elsewhere. Never 1: public sets hold no poppy.

Item ``i`` of epoch ``e`` is drawn from ``np.random.default_rng((seed, e, i, salt))``, so chips are reproducible in
any process and order (as :class:`datasets.chips.ChipDataset`), and negatives mixed into poppy chips are drawn
independently of them. Tiles are chosen in proportion to their ground area; a chip centre is uniform over the
tile with the chip inside it (when it fits), and chips mostly outside the valid area are redrawn a few times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from core.errors import InputError
from datasets.chips import EpochChips
from datasets.labelled import hold_out
from datasets.labels import IGNORE
from datasets.public.base import PublicDataset, PublicTile

__all__ = ["LABEL_KINDS", "MixedChipDataset", "PublicChip", "PublicChipDataset", "pretraining_split"]

log = logging.getLogger(__name__)

LABEL_KINDS = ("landcover", "negative")
_SALT = 0x9B11C  # keeps public-chip draws independent of the poppy chips drawn from (seed, epoch, index)
_MIX_SALT = 0x3A7  # the draw that picks a negative or a poppy chip for each index
Transform = Callable[[torch.Tensor, torch.Tensor, np.random.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class PublicChip:
    """One chip and how it was drawn.

    Attributes:
        image: ``float32 [C, S, S]`` in [0, 1]; 0 where the tile has no imagery.
        mask: ``int64 [S, S]``: class ids (``landcover``) or 0 (``negative``), 255 ignored.
        tile: Index of the tile in the dataset's tile list.
        window: The window read, in the tile's source pixels (fractional).
        gsd_m: Ground size of one chip pixel in metres (the model's GSD times the scale jitter).
        tries: Windows read before one was accepted.
        usable_fraction: Share of the mask that is not 255.
    """

    image: torch.Tensor
    mask: torch.Tensor
    tile: int
    window: Window
    gsd_m: float
    tries: int
    usable_fraction: float


class PublicChipDataset(EpochChips):
    """Chips of public-data-set tiles at the model's GSD; items are ``(image, mask)`` tensors.

    Args:
        dataset: The reader.
        tiles: The tiles to draw from (a split, or the training part of one).
        target_gsd_m: The model's GSD in metres per pixel.
        chip_size: Chip side ``S`` in model pixels.
        chips_per_epoch: ``len(dataset)``.
        labels: ``"landcover"`` (class ids) or ``"negative"`` (0 valid / 255 ignored).
        scale_jitter: Chips are read at ``target_gsd_m * U(1 - j, 1 + j)``.
        min_usable_fraction: Chips with less than this share of non-ignored pixels are redrawn...
        max_tries: ... at most this many times (then the best one is used).
        seed: Base seed.
        transform: ``(image, mask, rng) -> (image, mask)``, e.g. :func:`datasets.transforms.train_augment`
            (RGB chips only: its colour transforms expect three bands).

    Raises:
        InputError: On no tiles, a setting out of range, or land-cover chips from a data set without labels.
    """

    def __init__(
        self,
        dataset: PublicDataset,
        tiles: Sequence[PublicTile],
        *,
        target_gsd_m: float,
        chip_size: int = 256,
        chips_per_epoch: int = 1000,
        labels: str = "landcover",
        scale_jitter: float = 0.0,
        min_usable_fraction: float = 0.5,
        max_tries: int = 10,
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        checks = [
            (len(tiles) > 0, f"{dataset.name}:{dataset.root}: no tiles to draw chips from"),
            (labels in LABEL_KINDS, f"labels={labels!r}: choose one of {', '.join(LABEL_KINDS)}"),
            (target_gsd_m > 0, f"target_gsd_m={target_gsd_m}: must be > 0 (metres per pixel, e.g. 0.03)"),
            (chip_size >= 8, f"chip_size={chip_size}: must be at least 8 pixels"),
            (chips_per_epoch >= 1, f"chips_per_epoch={chips_per_epoch}: must be at least 1"),
            (0.0 <= scale_jitter < 1.0, f"scale_jitter={scale_jitter}: must be in [0, 1)"),
            (0.0 <= min_usable_fraction <= 1.0, f"min_usable_fraction={min_usable_fraction}: must be in [0, 1]"),
            (max_tries >= 1, f"max_tries={max_tries}: must be at least 1"),
            (labels != "landcover" or bool(dataset.classes),
             f"{dataset.name}:{dataset.root}: this copy has no labels; it can serve as negatives only"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        self.dataset = dataset
        self.tiles = list(tiles)
        self.target_gsd_m = float(target_gsd_m)
        self.chip_size = int(chip_size)
        self.chips_per_epoch = int(chips_per_epoch)
        self.labels = labels
        self.scale_jitter = float(scale_jitter)
        self.min_usable_fraction = float(min_usable_fraction)
        self.max_tries = int(max_tries)
        self.seed = int(seed)
        self.transform = transform
        super().__init__()
        areas = np.array([t.area_m2 for t in self.tiles], dtype=float)
        self._weights = areas / areas.sum()
        coarsest = max(t.gsd_m for t in self.tiles)
        self.upsampling = coarsest / self.target_gsd_m
        self.warnings: list[str] = []
        if self.upsampling > 1.5:
            note = (
                f"{dataset.title}: {coarsest * 100:g} cm/px tiles are upsampled {self.upsampling:.1f}x to the model's "
                f"{self.target_gsd_m * 100:g} cm: they teach layout and colour more than texture"
            )
            log.info(note)
            self.warnings.append(note)

    def chip_window(self, tile: PublicTile, row: float, col: float, gsd_m: float) -> Window:
        """The source window centred at fractional pixel ``(row, col)`` covering ``chip_size`` pixels of
        ``gsd_m`` metres per side."""
        side = self.chip_size * gsd_m / tile.gsd_m
        return Window(col_off=col - side / 2, row_off=row - side / 2, width=side, height=side)

    def read_chip(self, index: int, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Read tile ``index`` in ``window`` as ``(image uint8 [C, S, S], mask uint8 [S, S])``."""
        tile = self.tiles[index]
        size = (self.chip_size, self.chip_size)
        need_classes = self.labels == "landcover" or self.dataset.poppy_class is not None
        r = self.dataset.read(tile, window, size, classes=need_classes)
        if self.labels == "landcover":
            mask = r.classes
        else:
            keep = r.valid if self.dataset.poppy_class is None else r.valid & (r.classes != self.dataset.poppy_class)
            mask = np.where(keep, 0, IGNORE).astype(np.uint8)
        return r.image, mask  # type: ignore[return-value]

    def get_chip(self, index: int) -> PublicChip:
        """Draw item ``index`` of the current epoch, with the record of how it was drawn."""
        self._check_index(index)
        rng = np.random.default_rng((self.seed, self.epoch, int(index), _SALT))
        gsd = self.target_gsd_m
        if self.scale_jitter > 0:
            gsd *= float(rng.uniform(1.0 - self.scale_jitter, 1.0 + self.scale_jitter))
        best = None
        for tries in range(1, self.max_tries + 1):  # noqa: B007 (tries is reported)
            k = int(rng.choice(len(self.tiles), p=self._weights))
            tile = self.tiles[k]
            height, width = self.dataset.tile_shape(tile)
            side = self.chip_size * gsd / tile.gsd_m
            # The chip's top-left corner uniform so the whole chip lies on the tile (centred when it cannot).
            row = rng.uniform(0.0, height - side) + side / 2 if height > side else height / 2
            col = rng.uniform(0.0, width - side) + side / 2 if width > side else width / 2
            window = self.chip_window(tile, row, col, gsd)
            image, mask = self.read_chip(k, window)
            usable = float(np.mean(mask != IGNORE))
            if best is None or usable > best[4]:
                best = (k, window, image, mask, usable)
            if usable >= self.min_usable_fraction:
                break
        k, window, image, mask, usable = best  # type: ignore[misc]
        x = torch.from_numpy(image).float().div_(255.0)
        y = torch.from_numpy(mask.astype(np.int64))
        if self.transform is not None:
            x, y = self.transform(x, y, rng)
        return PublicChip(x, y, k, window, gsd, tries, usable)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        chip = self.get_chip(index)
        return chip.image, chip.mask


class MixedChipDataset(Dataset):
    """Poppy chips with public negatives mixed in at a chosen share.

    Item ``i`` is a negative with probability ``share`` (drawn from ``(seed, epoch, i)``), else item ``i`` of
    the poppy chips, so the mix is reproducible and a resumed epoch replays it exactly.

    Args:
        primary: The poppy chips (:class:`datasets.chips.ChipDataset`); ``len`` is taken from it.
        negatives: Public chips with ``labels="negative"``, at least as long as ``primary``.
        share: Fraction of items that are negatives, in (0, 1).
        seed: Base seed.

    Raises:
        InputError: If ``share`` is outside (0, 1), the negatives are not negative chips or are too few.
    """

    def __init__(self, primary: Dataset, negatives: PublicChipDataset, share: float, seed: int = 0) -> None:
        if not 0.0 < share < 1.0:
            raise InputError(f"--negative-share {share}: must be between 0 and 1 (e.g. 0.2)")
        if negatives.labels != "negative":
            raise InputError("the negatives must be drawn with labels='negative'")
        if len(negatives) < len(primary):  # type: ignore[arg-type]
            raise InputError(f"{len(negatives)} negative chips per epoch for {len(primary)} items: give as many")  # type: ignore[arg-type]
        self.primary, self.negatives, self.share, self.seed = primary, negatives, float(share), int(seed)
        self.warnings: list[str] = [*getattr(primary, "warnings", []), *negatives.warnings]

    def __len__(self) -> int:
        return len(self.primary)  # type: ignore[arg-type]

    @property
    def epoch(self) -> int:
        return self.negatives.epoch

    def set_epoch(self, epoch: int) -> None:
        self.primary.set_epoch(epoch)  # type: ignore[attr-defined]
        self.negatives.set_epoch(epoch)

    def is_negative(self, index: int) -> bool:
        """Whether item ``index`` of the current epoch is a public negative."""
        return bool(np.random.default_rng((self.seed, self.epoch, int(index), _MIX_SALT)).random() < self.share)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_negative(index):
            return self.primary[index]
        image, mask = self.negatives[index]
        if getattr(self.primary, "landcover", False):
            # The poppy chips carry [poppy, land cover] masks (an auxiliary head): a public negative's land cover
            # is unknown here, so it is ignored (255) and only its poppy-free mask teaches.
            mask = torch.stack([mask, torch.full_like(mask, 255)])
        return image, mask


def pretraining_split(
    dataset: PublicDataset, val_fraction: float, seed: int
) -> tuple[list[PublicTile], list[PublicTile], str]:
    """Training and validation tiles for land-cover pretraining.

    The data set's own ``val`` split when it is on disk with labels; otherwise whole groups (fields, orthophotos,
    scenes) of the ``train`` split are held out, ``max(1, round(fraction * groups))`` of them chosen by ``seed``
    (the same rule as :func:`datasets.labelled.hold_out` for orthomosaics).

    Returns:
        ``(train_tiles, val_tiles, rule)``, ``rule`` saying in words how the split was made.

    Raises:
        InputError: If the data set has no labelled training split or too few groups to hold one out.
    """

    labelled = dataset.labelled_splits()
    if "train" not in labelled:
        raise InputError(
            f"{dataset.name}:{dataset.root}: no labelled train split; pretraining needs the land-cover labels "
            "(this copy can still serve as --negatives)"
        )
    train = dataset.tiles("train")
    if "val" in labelled:
        return train, dataset.tiles("val"), f"the data set's own val split ({dataset.title})"
    groups = sorted({t.group for t in train})
    if len(groups) < 2:
        raise InputError(
            f"{dataset.name}:{dataset.root}: {len(groups)} of its {dataset.group_kind} only; validation holds out "
            f"whole {dataset.group_kind}, so give at least two"
        )
    _, held = hold_out(groups, val_fraction, seed)
    held_set = set(held)
    rule = f"held out {len(held)} of {len(groups)} {dataset.group_kind} of {dataset.title} (seed {seed})"
    return [t for t in train if t.group not in held_set], [t for t in train if t.group in held_set], rule
