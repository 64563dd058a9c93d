"""Scene-wide random conditions: season, light, camera, soil and crop mix.

Everything a real survey season varies and that applies to a whole flight is drawn here once per scene, from
the scene's generator, and recorded in the sidecar. Per-parcel and per-plot variation is drawn by the layout
and the materials.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["CROPS", "STAGES", "Season", "sample_season"]

STAGES = ("vegetative", "flowering", "capsule")
# Field crops a parcel can carry, with their base share in a north/east-China spring landscape.
CROPS = {
    "wheat": 3.0,
    "corn": 1.5,
    "vegetables": 2.5,
    "garlic": 1.2,
    "bare": 1.5,
    "grass": 0.8,
    "plastic_mulch": 0.8,
    "greenhouse": 0.5,
    "rapeseed": 0.5,
    "orchard": 0.5,
}
# Soil colours seen from the air (sRGB, dry, in sun): loess, brown, dark, reddish, grey alluvium.
_SOILS = (
    (172, 152, 122),  # loess, yellowish brown
    (146, 130, 108),  # grey-brown
    (112, 98, 82),  # dark brown
    (160, 156, 144),  # pale grey alluvium
    (150, 116, 94),  # reddish brown
    (164, 142, 112),
)


@dataclass(frozen=True)
class Season:
    """Conditions shared by the whole scene (see :func:`sample_season`)."""

    stage: str
    phase: float
    scene_kind: str
    grid_angle_deg: float
    sun_azimuth_deg: float
    sun_elevation_deg: float
    cloud: float
    sky_level: float
    wb_temp: float
    wb_tint: float
    exposure_ev: float
    contrast: float
    saturation: float
    haze: float
    blur_px: float
    sharpen: float
    noise: float
    jpeg_quality: int
    seam_gain: float
    seam_spacing_m: float
    soil_rgb: tuple[int, int, int]
    soil_moisture: float
    vigour: float
    crop_weights: dict

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop_weights"] = {k: round(float(v), 4) for k, v in self.crop_weights.items()}
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def sample_season(rng: np.random.Generator, stage: str, gsd: float) -> Season:
    """Draw the scene-wide conditions.

    Args:
        rng: The scene's generator.
        stage: ``vegetative|flowering|capsule|mixed|none``: the poppy stage asked for; it also sets the
            calendar (``phase`` 0 = early spring, 1 = May flowering, 2 = June capsules), which drives wheat
            colour, corn size and tree foliage.
        gsd: Ground sample distance, metres (the camera blur is in pixels, so it does not depend on it).
    """
    in_stage = stage in STAGES
    phase = float(STAGES.index(stage) + rng.uniform(-0.35, 0.35)) if in_stage else float(rng.uniform(-0.2, 2.3))
    phase = float(np.clip(phase, -0.3, 2.4))
    kind = str(rng.choice(["fields", "village_edge", "village"], p=[0.45, 0.35, 0.2]))
    # Plains farmland tends to follow the cardinal directions; hill country does not.
    cardinal = rng.random() < 0.65
    grid = float(rng.choice([0.0, 90.0]) + rng.normal(0, 6)) if cardinal else float(rng.uniform(0, 180))
    # Flights between about 9:00 and 16:30 local time in April-June: sun in the south-east to south-west.
    az = float(rng.uniform(100, 260))
    el = float(rng.uniform(28, 72))
    cloud = float(np.clip(rng.beta(0.8, 3.0) * 1.1, 0, 0.85))
    w = dict(CROPS)
    if phase > 1.7:
        w["rapeseed"] *= 0.3  # rapeseed has finished flowering by June
    names = list(w)
    mix = rng.dirichlet([w[n] * 1.2 for n in names])
    soil = np.array(_SOILS[rng.integers(len(_SOILS))], float) * rng.uniform(0.92, 1.08) * rng.uniform(0.97, 1.03, 3)
    return Season(
        stage=stage,
        phase=round(phase, 4),
        scene_kind=kind,
        grid_angle_deg=grid,
        sun_azimuth_deg=az,
        sun_elevation_deg=el,
        cloud=cloud,
        sky_level=float(rng.uniform(0.16, 0.3)),
        wb_temp=float(rng.normal(0, 0.45)),
        wb_tint=float(rng.normal(0, 0.25)),
        exposure_ev=float(rng.normal(0, 0.22)),
        contrast=float(rng.uniform(0.9, 1.15)),
        saturation=float(rng.uniform(0.85, 1.15)),
        haze=float(rng.beta(1.2, 6.0) * 0.25),
        blur_px=float(rng.uniform(0.35, 1.25)),
        sharpen=float(rng.choice([0.0, rng.uniform(0.2, 0.8)], p=[0.4, 0.6])),
        noise=float(rng.uniform(0.004, 0.018)),
        jpeg_quality=int(rng.integers(72, 96)),
        seam_gain=float(rng.uniform(0.0, 0.05)),
        seam_spacing_m=float(rng.uniform(14, 45)),
        soil_rgb=tuple(int(c) for c in np.clip(soil, 60, 215)),
        soil_moisture=float(rng.beta(1.5, 2.5)),
        vigour=float(rng.uniform(0.8, 1.2)),
        crop_weights={n: float(m) for n, m in zip(names, mix, strict=True)},
    )


def sun_of(season: Season):
    """The season's :class:`~datasets.scene.context.Sun`."""
    from datasets.scene.context import Sun

    return Sun(season.sun_azimuth_deg, season.sun_elevation_deg)


def wb_gains(season: Season) -> np.ndarray:
    """Per-channel white-balance gains (a colour-temperature error and a green/magenta tint)."""
    t, n = season.wb_temp, season.wb_tint
    g = np.array([math.exp(0.07 * t), math.exp(0.03 * n), math.exp(-0.08 * t)], np.float32)
    return g / g[1]
