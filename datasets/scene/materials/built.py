"""Built surfaces: dirt, asphalt and concrete roads, courtyards, roofs, walls, vehicles and yard clutter."""

from __future__ import annotations

import math

import numpy as np

from datasets.scene import noise
from datasets.scene.colour import lin
from datasets.scene.context import PixelSet
from datasets.scene.items import LC, Item
from datasets.scene.materials.base import Material, Surface, register
from datasets.scene.materials.common import blend, grass, jitter_rgb, mix_surfaces, relief, sample_grass, soil

_F = np.float32


def line_coords(px: PixelSet, line: list) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance across (m, left positive) and distance along a polyline, for each pixel.

    Roads are polylines of a few segments, so the nearest segment is found by brute force.
    """
    pts = np.asarray(line, np.float64)
    best = np.full(len(px), np.inf)
    across = np.zeros(len(px))
    along = np.zeros(len(px))
    run = 0.0
    for k in range(len(pts) - 1):
        a, b = pts[k], pts[k + 1]
        d = b - a
        seg_len = float(np.hypot(*d)) + 1e-9
        du, dv = px.u - a[0], px.v - a[1]
        s = np.clip((du * d[0] + dv * d[1]) / seg_len, 0, seg_len)
        cu, cv = a[0] + d[0] * s / seg_len, a[1] + d[1] * s / seg_len
        dist = np.hypot(px.u - cu, px.v - cv)
        side = np.sign(d[0] * dv - d[1] * du)
        closer = dist < best
        best = np.where(closer, dist, best)
        across = np.where(closer, dist * side, across)
        along = np.where(closer, run + s, along)
        run += seg_len
    return across.astype(_F), along


@register
class Road(Material):
    """A road: ``kind`` dirt (ruts, puddles, grassy crown), asphalt (cracks, patches, paint) or concrete."""

    name = "road"
    opaque = True
    landcover = LC["road"]

    def sample(self, rng, season, geom) -> dict:
        return {
            "soil": jitter_rgb(rng, np.array(season.soil_rgb) * 1.12, 0.05),
            "asphalt": jitter_rgb(rng, (82, 82, 84), 0.12),
            "concrete": jitter_rgb(rng, (172, 170, 162), 0.06),
            "paint": str(rng.choice(["white", "yellow", "none"], p=[0.5, 0.2, 0.3])),
            "crown_grass": bool(rng.random() < 0.35),
            "slab": float(rng.uniform(3.5, 6.0)),
            **sample_grass(rng, season),
        }

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        x, a = line_coords(px, p["line"])
        hw = p["width"] / 2
        ax = np.abs(x)
        kind = p["kind"]
        if kind == "dirt":
            alb, irr = soil(px, p["soil"], s, 0.15, clod=0.35)
            rut = np.exp(-(((ax - _F(0.8)) / _F(0.22)) ** 2)) * (_F(0.6) + _F(0.4) * px.noise(1.5, s + 1))
            alb = alb * (_F(1) - _F(0.18) * rut)[:, None]
            puddle = np.clip(px.fbm(1.5, s + 2, octaves=2) * _F(4) - _F(2.2), 0, 1) * (ax < hw - 0.3)
            alb = blend(alb, lin((70, 78, 88)), puddle * _F(0.8))
            if p["crown_grass"]:
                g = np.clip((_F(0.35) - ax + _F(0.15) * px.noise(0.3, s + 4)) * _F(8), 0, 1)
                alb, irr = mix_surfaces((alb, irr), grass(px, p, s + 3), g)
        elif kind == "asphalt":
            base = lin(p["asphalt"])
            patch = px.fbm(3.0, s, octaves=2)
            logb = _F(0.12) * px.grain(s + 1) + _F(0.08) * px.fbm(0.05, s + 2, 2) + _F(0.1) * patch
            repair = (np.clip(px.noise(4.0, s + 3) * _F(3) - _F(1.8), 0, 1) > 0.5).astype(_F)
            crack = np.abs(px.fbm(0.9, s + 4, octaves=3)) < 0.025
            logb = logb - _F(0.25) * repair - _F(0.5) * crack
            alb = base * np.exp(logb)[:, None]
            alb = alb * np.exp(_F(0.15) * np.exp(-(((ax - _F(0.9)) / _F(0.35)) ** 2)))[:, None]  # polished tracks
            irr = np.ones(len(px), _F)
            if p["paint"] != "none" and hw > 2.4:
                paint = lin((225, 225, 215) if p["paint"] == "white" else (215, 170, 40))
                wear = _F(0.75) * np.clip(px.noise(0.5, s + 5) + _F(1.2), 0, 1)
                centre = (ax < 0.075) & (np.mod(a, 10.0) < 4.0)
                edge = np.abs(ax - _F(hw - 0.35)) < 0.075
                alb = blend(alb, paint, (centre | edge).astype(_F) * wear)
        else:  # concrete
            base = lin(p["concrete"])
            stain = px.fbm(2.0, s, octaves=3)
            logb = _F(0.06) * px.grain(s + 1) + _F(0.1) * stain + _F(0.05) * px.fbm(0.1, s + 2, 2)
            joint = (np.abs(np.mod(a, p["slab"]) - 0.01) < 0.012) | (ax < 0.012)
            crack = np.abs(px.fbm(1.3, s + 3, octaves=3)) < 0.012
            tyre = np.exp(-(((ax - _F(0.85)) / _F(0.3)) ** 2)) * _F(0.12)
            alb = base * np.exp(logb - _F(0.45) * joint - _F(0.35) * crack - tyre)[:, None]
            irr = np.ones(len(px), _F)
        # Ragged edges: soil and weeds creep in from the verge.
        edge = np.clip((ax - _F(hw) + _F(0.25) + _F(0.25) * px.noise(0.4, s + 6)) * _F(6), 0, 1)
        if kind != "dirt":
            alb, irr = mix_surfaces((alb, irr), soil(px, p["soil"], s + 7, 0.2, clod=0.4), edge)
        return Surface(alb, irr, sky=_F(1), elev=_F(0))


def local_frame(px: PixelSet, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (along, across) in metres in an object's own frame (centre, angle from params)."""
    ang = p["angle"]
    du, dv = px.u - p["centre"][0], px.v - p["centre"][1]
    a = du * math.cos(ang) + dv * math.sin(ang)
    x = -du * math.sin(ang) + dv * math.cos(ang)
    return a.astype(_F), x.astype(_F)


@register
class Courtyard(Material):
    """A farmhouse yard: poured concrete, brick paving or swept earth."""

    name = "courtyard"
    opaque = True
    landcover = LC["courtyard_paved"]

    def sample(self, rng, season, geom) -> dict:
        kind = str(rng.choice(["concrete", "brick", "earth"], p=[0.5, 0.3, 0.2]))
        brick = (142, 100, 84) if rng.random() < 0.4 else (128, 126, 122)
        return {
            "kind": kind,
            "concrete": jitter_rgb(rng, (168, 165, 156), 0.07),
            "brick": jitter_rgb(rng, brick, 0.08),
            "soil": jitter_rgb(rng, np.array(season.soil_rgb) * 1.08, 0.05),
        }

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        if p["kind"] == "concrete":
            logb = _F(0.06) * px.grain(s) + _F(0.14) * px.fbm(1.5, s + 1, 3)
            wet = np.clip(px.fbm(0.8, s + 2, 2) * _F(2) - _F(1.2), 0, 1)
            alb = lin(p["concrete"]) * np.exp(logb - _F(0.18) * wet)[:, None]
            irr = np.ones(len(px), _F)
        elif p["kind"] == "brick":
            a, x = local_frame(px, p)
            bw, bh = 0.24, 0.115
            row = np.floor(x / bh).astype(np.int64)
            shift = (row % 2) * (bw / 2)
            col = np.floor((a + shift) / bw).astype(np.int64)
            fx = np.mod(a + shift, bw)
            fy = np.mod(x, bh)
            joint = (fx < 0.012) | (fy < 0.012)
            h = noise.unit(noise.hash_u32(s, row, col))
            logb = _F(0.18) * (h - _F(0.5)) + _F(0.05) * px.grain(s + 1) + _F(0.1) * px.fbm(2.0, s + 2, 2)
            alb = lin(p["brick"]) * np.exp(logb - _F(0.45) * joint)[:, None]
            irr = np.ones(len(px), _F)
        else:
            alb, irr = soil(px, p["soil"], s, 0.15, clod=0.25)
        return Surface(alb, irr, sky=_F(0.95), elev=_F(0))


_ROOFS = {
    "red_tile": (162, 78, 58),
    "grey_tile": (98, 98, 102),
    "blue_steel": (78, 112, 148),
    "flat_concrete": (160, 157, 150),
    "brown_tile": (120, 88, 70),
}
# How each roof kind is drawn; randomised scenes (datasets.scene.randomise) add kinds and set ``style`` directly.
_ROOF_STYLE = {
    "red_tile": "tile",
    "grey_tile": "tile",
    "blue_steel": "steel",
    "flat_concrete": "flat",
    "brown_tile": "tile",
}


@register
class Roof(Material):
    """A roof seen from above: gable (two lit/shaded planes, tile courses, ridge) or flat with a parapet."""

    name = "roof"
    landcover = LC["building"]

    def sample(self, rng, season, geom) -> dict:
        kind = str(rng.choice(list(_ROOFS), p=[0.35, 0.3, 0.1, 0.17, 0.08]))
        return {
            "kind": kind,
            "colour": jitter_rgb(rng, _ROOFS[kind], 0.08),
            "pitch": float(rng.uniform(18, 32)),
            "tile": float(rng.uniform(0.18, 0.26)),
            "weather": float(rng.uniform(0.0, 0.6)),
            "heater": bool(rng.random() < 0.35),
        }

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p, s = item.params, item.seed
        a, x = local_frame(px, p)
        hl, hw = p["half"]
        base = lin(p["colour"])
        ang = p["angle"]
        weather = px.fbm(1.5, s, octaves=3)
        logb = _F(0.05) * px.grain(s + 1) + _F(0.12 * p["weather"]) * weather
        style = p.get("style") or _ROOF_STYLE[p["kind"]]
        if style == "solar":
            return _solar_roof(px, item, a, x)
        if style == "flat":
            rim = (np.abs(x) > hw - 0.25) | (np.abs(a) > hl - 0.25)
            stain = np.clip(px.fbm(0.6, s + 2, 3) * _F(2.0) - _F(0.6), 0, 1)
            logb = logb - _F(0.14) * stain + _F(0.1) * rim
            lit = np.ones(len(px), _F)
            inner = np.clip((np.minimum(hw - np.abs(x), hl - np.abs(a)) - _F(0.25)) * _F(8), 0, 1)
            # The parapet shades a thin strip inside it on the side away from the sun.
            lit = lit * (_F(0.75) + _F(0.25) * inner)
        else:
            side = np.sign(x)
            t = math.tan(math.radians(p["pitch"]))
            nu = side * _F(-math.sin(ang) * t)
            nv = side * _F(math.cos(ang) * t)
            lit = px.ctx.sun.shading(nu, nv, np.ones_like(nu))
            tile = p["tile"]
            if style == "steel":
                corr = np.cos(a * _F(2 * math.pi / 0.2))
                lit = lit * (_F(1) + _F(0.12) * corr)
                # Rust and dirt run down the slope in streaks.
                streak = noise.noise_pts(
                    px.v * 0 + a.astype(np.float64) / 0.15, np.abs(x).astype(np.float64) / 1.5, 1.0, s + 3
                )
                rust = np.clip(streak * _F(2.5) - _F(1.2), 0, 1) * _F(0.6 * p["weather"])
                base = blend(base, lin((128, 100, 80)), rust)
            else:
                # Tile channels run from ridge to eave; courses cross them.
                chan = np.cos(a * _F(2 * math.pi / tile))
                course = np.mod(np.abs(x), _F(tile * 1.4)) < 0.025
                lit = lit * (_F(1) + _F(0.14) * chan)
                h = noise.unit(
                    noise.hash_u32(
                        s + 4, np.floor(a / tile).astype(np.int64), np.floor(np.abs(x) / (tile * 1.4)).astype(np.int64)
                    )
                )
                logb = logb + _F(0.12) * (h - _F(0.5)) - _F(0.25) * course
            ridge = np.abs(x) < 0.14
            eave = np.abs(x) > hw - 0.12
            logb = logb - _F(0.15) * eave + _F(0.05) * ridge
            lit = np.where(ridge, _F(1.0), lit)
        alb = base * np.exp(logb)[:, None]
        if p["heater"]:
            # A solar water heater: a rack of dark evacuated tubes under a silver tank.
            ha, hx = p.get("heater_pos", (0.0, 0.0))
            da, dx = a - _F(ha), x - _F(hx)
            on = (np.abs(da) < 0.95) & (np.abs(dx) < 0.75)
            tubes = on & (dx < 0.45)
            tank = on & (dx >= 0.45)
            # Evacuated glass tubes 6 cm across: dark, each with a thin sky reflection along its top.
            ph = np.mod(da, _F(0.075)) / _F(0.075)
            shine = np.exp(-(((ph - _F(0.35)) / _F(0.12)) ** 2))
            tube_col = lin((30, 34, 48)) + (lin((150, 160, 180)) - lin((30, 34, 48))) * (shine * _F(0.6))[:, None]
            alb = np.where(tubes[:, None], tube_col, alb)
            alb = np.where(tank[:, None], lin((205, 208, 210)), alb)
            lit = np.where(tank, _F(1.15), lit)
        return Surface(alb, lit, sky=_F(1), elev=_F(item.height))


def _solar_roof(px: PixelSet, item: Item, a: np.ndarray, x: np.ndarray) -> Surface:
    """A roof covered in photovoltaic modules: dark cells in a grid of silver frames, mirroring the sky.

    Crystalline modules (about 1.0 x 1.7 m, 6 x 10 cells of 16 cm) show the cell grid and bright frames; thin-film
    ones (``cells`` False) are one even surface inside the frames.
    """
    p, s = item.params, item.seed
    hl, hw = p["half"]
    base = lin(p["colour"])
    mod_a, mod_x = 1.02, 1.70
    fa, fx = np.mod(a + _F(hl), _F(mod_a)), np.mod(x + _F(hw), _F(mod_x))
    frame = (fa < 0.02) | (fa > mod_a - 0.02) | (fx < 0.02) | (fx > mod_x - 0.02)
    cell = (np.mod(fa, _F(0.166)) < 0.008) | (np.mod(fx, _F(0.166)) < 0.008)
    if not p.get("cells", True):
        cell[:] = False
    # A module's glass mirrors the sky: brightness varies slowly from module to module.
    ia = np.floor((a + hl) / mod_a).astype(np.int64)
    ix = np.floor((x + hw) / mod_x).astype(np.int64)
    mod_id = noise.unit(noise.hash_u32(s, ia, ix))
    logb = _F(0.1) * (mod_id - _F(0.5)) + _F(0.03) * px.grain(s + 1) + _F(0.25) * cell
    alb = base * np.exp(logb)[:, None]
    alb = np.where(frame[:, None], lin((150, 152, 156)), alb)
    # Modules cover the roof up to a 0.3 m edge; the roof shows around them.
    edge = (np.abs(x) > hw - 0.3) | (np.abs(a) > hl - 0.3)
    alb = np.where(edge[:, None], lin((120, 118, 116)), alb)
    lc = np.where(edge, LC["building"], LC["solar_panel"]).astype(np.uint8)
    return Surface(alb, _F(1.05), sky=_F(1), elev=_F(item.height), landcover=lc)


@register
class Wall(Material):
    """The top of a yard wall (brick or rendered); its long thin shadow is the giveaway."""

    name = "wall"
    landcover = LC["building"]

    def sample(self, rng, season, geom) -> dict:
        c = (152, 90, 70) if rng.random() < 0.5 else (165, 162, 155)
        return {"colour": jitter_rgb(rng, c, 0.08)}

    def surface(self, px: PixelSet, item: Item) -> Surface:
        alb = lin(item.params["colour"]) * np.exp(_F(0.08) * px.grain(item.seed))[:, None]
        return Surface(alb, _F(1.05), sky=_F(1), elev=_F(item.height))


_CARS = {
    "white": (225, 225, 222),
    "silver": (165, 168, 172),
    "black": (28, 28, 30),
    "red": (175, 28, 30),
    "blue": (35, 70, 140),
    "grey": (105, 107, 110),
    "brown": (110, 80, 55),
}


@register
class Vehicle(Material):
    """A car or a farm tricycle seen from above: bonnet, dark windscreen, roof, rear window."""

    name = "vehicle"
    landcover = LC["vehicle"]

    def sample(self, rng, season, geom) -> dict:
        c = str(rng.choice(list(_CARS), p=[0.3, 0.18, 0.14, 0.14, 0.1, 0.1, 0.04]))
        return {"colour_name": c, "colour": jitter_rgb(rng, _CARS[c], 0.05)}

    def surface(self, px: PixelSet, item: Item) -> Surface:
        p = item.params
        a, x = local_frame(px, p)
        hl, hw = p["half"]
        q = a / _F(hl)  # -1 rear .. +1 front
        body = lin(p["colour"])
        glass = lin((30, 36, 44))
        if p.get("tricycle"):
            cab = q > 0.45
            bed = ~cab
            col = np.where(cab[:, None], body, lin((120, 120, 118)))
            rim = bed & ((np.abs(x) > hw - 0.08) | (q < -0.93))
            col = np.where(rim[:, None], body * _F(0.8), col)
            lit = np.ones(len(px), _F)
        else:
            ax = np.abs(x) / _F(hw)  # 0 centre line .. 1 side
            # Glass is narrower than the body and tapers: windscreen, side windows, rear window.
            wind = (q > 0.16) & (q < 0.42) & (ax < 0.82 - (q - 0.16) * 0.3)
            rear = (q > -0.74) & (q < -0.56) & (ax < 0.78)
            roof = (q >= -0.56) & (q <= 0.16) & (ax < 0.8)
            side_glass = (q > -0.56) & (q < 0.16) & (ax >= 0.8) & (ax < 0.9)
            glass_m = wind | rear | side_glass
            col = np.where(glass_m[:, None], glass, body)
            # Rounded body: darker towards the sides, a sky reflection on roof and bonnet.
            curve = np.clip(ax, 0, 1) ** 3
            lit = _F(1.08) - _F(0.5) * curve
            lit = np.where(roof, lit * _F(1.06), lit)
            refl = np.clip(_F(1) - ax, 0, 1) * _F(0.25) * (wind | rear)
            col = blend(col, lin((170, 180, 195)), refl)
            lit = np.where(np.abs(q) > 0.97, lit * _F(0.7), lit)
        alb = col * np.exp(_F(0.03) * px.grain(item.seed))[:, None]
        return Surface(alb, lit, sky=_F(1), elev=_F(item.height))


_CLUTTER = {
    "corn_cobs": (215, 160, 45),
    "firewood": (120, 95, 70),
    "bricks": (150, 80, 60),
    "sacks": (218, 215, 205),
    "straw": (185, 165, 110),
}


@register
class Clutter(Material):
    """Yard clutter: piles of corn cobs, firewood, bricks, sacks or straw."""

    name = "clutter"
    landcover = LC["courtyard_paved"]

    def sample(self, rng, season, geom) -> dict:
        k = str(rng.choice(list(_CLUTTER)))
        return {"kind": k, "colour": jitter_rgb(rng, _CLUTTER[k], 0.08)}

    def surface(self, px: PixelSet, item: Item) -> Surface:
        s = item.seed
        blob = px.fbm(0.12, s, octaves=3)
        alb = lin(item.params["colour"]) * np.exp(_F(0.3) * blob + _F(0.08) * px.grain(s + 1))[:, None]
        return Surface(alb, relief(px, 0.15, s + 2, 2.5), sky=_F(0.9), elev=_F(item.height))
