"""Tree crowns (leaf clusters on a lit dome; spring blossom on fruit trees) and cast shadows."""

from __future__ import annotations

import numpy as np

from datasets.scene import textures
from datasets.scene.colour import lin
from datasets.scene.context import PixelSet, WindowContext
from datasets.scene.items import LC, Item
from datasets.scene.materials.base import Material, Surface, register
from datasets.scene.materials.common import blend, jitter_rgb

_F = np.float32
_TREES = {
    "broadleaf": (70, 98, 48),
    "poplar": (88, 114, 60),
    "willow": (112, 136, 70),
    "pine": (46, 66, 46),
    "fruit": (80, 108, 54),
}


@register
class Tree(Material):
    """A tree crown: a dome of leaf clusters, bright on the sunward side, with dark gaps between clusters."""

    name = "tree"
    landcover = LC["tree"]

    def sample(self, rng, season, geom) -> dict:
        kind = str(rng.choice(list(_TREES), p=[0.35, 0.3, 0.1, 0.1, 0.15]))
        green = np.array(_TREES[kind], float)
        if season.phase < 0.5 and kind != "pine":
            green = green * 0.7 + np.array([120, 130, 80]) * 0.3  # early spring: thin, light foliage
        blossom = kind == "fruit" and season.phase < 0.8 and rng.random() < 0.6
        return {
            "kind": kind,
            "green": jitter_rgb(rng, green, 0.08),
            "cluster": float(rng.uniform(0.25, 0.6) if kind != "pine" else 0.2),
            "blossom": str(rng.choice(["white", "pink"])) if blossom else "none",
            "gaps": float(rng.uniform(0.15, 0.45)),
        }

    def draw(self, ctx: WindowContext, item: Item) -> None:
        px = ctx.pixels(item.geom)
        if len(px) == 0:
            return
        p, s = item.params, item.seed
        keep, q, tex, _ = crown(px, p, s)
        px = px.subset(keep)
        q, tex = q[keep], tex[keep]
        if len(px) == 0:
            return
        cu, cv = p["centre"]
        radius = p["radius"]
        du = (px.u - cu).astype(_F)
        dv = (px.v - cv).astype(_F)
        scale = p["cluster"] / 0.35
        _, relief = textures.sample_relief(px, "foliage", s, scale, 1.1)
        leaf = px.grain(s + 2)
        # Dome normal times the relief of the leaf clusters; deep gaps between clusters stay dark.
        k = _F(1.2)
        nz = np.sqrt(np.clip(_F(1) - q * q, 0.05, 1))
        lit = ctx.sun.shading(du / _F(radius) * k, dv / _F(radius) * k, nz) * relief
        gap = np.clip(-tex * _F(1.2) - _F(0.6) + _F(p["gaps"]), 0, 1)
        lit = lit * (_F(1) - _F(0.8) * gap)
        col = lin(p["green"]) * np.exp(_F(0.14) * tex + _F(0.05) * leaf + _F(0.08) * px.noise(1.5, s + 4))[:, None]
        if p["blossom"] != "none":
            b = lin((238, 236, 228) if p["blossom"] == "white" else (236, 176, 196))
            m = np.clip((textures.sample(px, "grass", s + 3, 1.5) + _F(0.6) * tex) * _F(1.5) - _F(0.2), 0, 1) * _F(0.85)
            col = blend(col, b, m)
        sky = _F(0.75) + _F(0.25) * (_F(1) - q) - _F(0.3) * gap
        self.paint(px, Surface(col, lit, sky=sky, elev=_F(item.height) * (_F(0.6) + _F(0.4) * nz)))


def crown(px: PixelSet, p: dict, seed: int, shift: tuple[float, float] = (0.0, 0.0)):
    """Which pixels of a crown's polygon the ragged crown covers, sampled ``shift`` metres away.

    Returns ``(keep, q, texture, (du, dv))``: q is the distance from the crown centre over its radius. The
    shadow uses the same function shifted by its offset, so it has exactly the crown's outline.
    """
    cu, cv = p["centre"]
    du = (px.u + shift[0] - cu).astype(_F)
    dv = (px.v + shift[1] - cv).astype(_F)
    q = np.sqrt(du * du + dv * dv) / _F(p["radius"])
    tex = textures.sample(px, "foliage", seed, p["cluster"] / 0.35, shift=shift)
    # Clusters at the rim stick out or leave notches: the edge follows the leaf-cluster texture.
    keep = q < _F(0.82) + _F(0.12) * tex
    return keep, np.clip(q, 0, 1), tex, (du, dv)


@register
class Shadow(Material):
    """A cast shadow: darkens the direct sun on whatever lies lower than its caster (dappled under trees)."""

    name = "shadow"
    landcover = 0

    def draw(self, ctx: WindowContext, item: Item) -> None:
        px = ctx.pixels(item.geom)
        if len(px) == 0:
            return
        p = item.params
        lower = px.get("elev") < _F(item.height * 0.85)
        px = px.subset(lower)
        if len(px) == 0:
            return
        op = np.full(len(px), _F(p.get("opacity", 0.92)))
        if "tree" in p:
            # The crown's own ragged outline, moved along the shadow; light comes through between clusters.
            t = p["tree"]
            keep, _, tex, _ = crown(px, t, t["seed"], shift=(-p["offset"][0], -p["offset"][1]))
            holes = np.clip(tex * _F(1.5) - _F(2.0), 0, 1)
            op = op * keep * (_F(1) - _F(0.6) * holes)
        px.set("irr", px.get("irr") * (_F(1) - op))
