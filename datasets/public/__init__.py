"""Public aerial crop and land-cover data sets, read from local disk in the layout their publishers ship.

No public set has opium poppy, but they teach an encoder what farmland looks like from the air, and every valid
pixel of them is a poppy-free negative from a real farm. Nothing is downloaded: the user names a data set and
the folder it was extracted to, as ``NAME[@GSD]:PATH`` (``@GSD`` replaces the published ground resolution, in
metres per pixel)::

    agriculture-vision:/data/Agriculture-Vision-2021      US farmland, RGB+NIR, 10 cm (non-commercial)
    agriculture-vision@0.15:/data/Agriculture-Vision-2021
    loveda:/data/LoveDA    loveda-rural:...  loveda-urban:...  Chinese land cover, 0.3 m (CC BY-NC-SA 4.0)
    landcover.ai:/data/landcover.ai.v1                    Polish orthophotos, 25/50 cm (CC BY-NC-SA 4.0)
    synthetic-landcover:/data/synth-lc                    generated scenes with NAME.landcover.tif
    real-negatives:../shared/data/real/negatives          real poppy-free drone/aerial files (train part only)

One module per data set (layout, encodings, GSD, licence and the sources they were checked against are in each
module's docstring), a common base (:mod:`datasets.public.base`) and the chip sampler
(:mod:`datasets.public.chips`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from core.errors import InputError
from datasets.public.agriculture_vision import AgricultureVision
from datasets.public.base import PublicDataset, PublicTile, TileRead
from datasets.public.chips import MixedChipDataset, PublicChip, PublicChipDataset, pretraining_split
from datasets.public.landcoverai import LandCoverAI
from datasets.public.loveda import LoveDA
from datasets.public.real_negatives import RealNegatives
from datasets.public.synthetic_landcover import SyntheticLandcover

__all__ = [
    "PUBLIC_DATASETS",
    "AgricultureVision",
    "LandCoverAI",
    "LoveDA",
    "MixedChipDataset",
    "PublicChip",
    "PublicChipDataset",
    "PublicDataset",
    "PublicTile",
    "RealNegatives",
    "SyntheticLandcover",
    "TileRead",
    "list_public",
    "normalise_spec",
    "open_public",
    "parse_spec",
    "pretraining_split",
]

PUBLIC_DATASETS: dict[str, Callable[..., PublicDataset]] = {
    "agriculture-vision": AgricultureVision,
    "loveda": LoveDA,
    "loveda-rural": functools.partial(LoveDA, domains=("Rural",)),
    "loveda-urban": functools.partial(LoveDA, domains=("Urban",)),
    "landcover.ai": LandCoverAI,
    "synthetic-landcover": SyntheticLandcover,
    "real-negatives": RealNegatives,
}
_ALIASES = {
    "agrivision": "agriculture-vision",
    "agriculture_vision": "agriculture-vision",
    "landcoverai": "landcover.ai",
}


def list_public() -> list[str]:
    """The data set names ``NAME:PATH`` accepts."""
    return sorted(PUBLIC_DATASETS)


def parse_spec(spec: str, flag: str = "data set") -> tuple[str, float | None, str]:
    """Split ``NAME[@GSD]:PATH`` into ``(name, gsd_m or None, path)``.

    Only the first colon separates, so Windows paths (``loveda:D:\\LoveDA``) work.

    Raises:
        InputError: If the spec has no colon, an unknown name, or a GSD that is not a number.
    """
    head, sep, path = spec.partition(":")
    name, _, gsd_text = head.partition("@")
    name = _ALIASES.get(name.strip().lower(), name.strip().lower())
    known = ", ".join(list_public())
    if not sep or not path:
        raise InputError(f"{flag} {spec!r}: give NAME:PATH, e.g. agriculture-vision:/data/Agriculture-Vision-2021")
    if name not in PUBLIC_DATASETS:
        raise InputError(f"{flag} {spec!r}: unknown data set {name!r}; choose one of: {known}")
    gsd = None
    if gsd_text:
        try:
            gsd = float(gsd_text)
        except ValueError:
            raise InputError(f"{flag} {spec!r}: {gsd_text!r} is not metres per pixel; e.g. {name}@0.15:PATH") from None
    return name, gsd, path


def normalise_spec(spec: str, flag: str = "data set") -> str:
    """The spec with the name canonical and the path absolute (what a run records in its settings)."""
    name, gsd, path = parse_spec(spec, flag)
    return f"{name}{'' if gsd is None else f'@{gsd:g}'}:{Path(path).expanduser().resolve()}"


def open_public(spec: str, flag: str = "data set") -> PublicDataset:
    """Open a public data set from ``NAME[@GSD]:PATH``.

    Raises:
        InputError: On a bad spec, a missing folder, or a folder not in the data set's published layout.
    """
    name, gsd, path = parse_spec(spec, flag)
    return PUBLIC_DATASETS[name](Path(path).expanduser(), gsd_m=gsd)
