"""A scene as vector geometry: parcels, roads, villages, trees, poppy plots, confusers, footprint. No pixels.

The layout is drawn once per scene from the scene's generator, in scene metres (``u`` east, ``v`` south,
origin at the scene's top-left corner) and a little beyond the scene so that objects and shadows cross its
edges naturally. It is small (a list of shapely polygons with material names and parameters) even for a
1 km scene, and it is all the renderer needs: windows query it with an STR-tree and draw what they touch.

Sizes are real: farm strips 4-30 m wide, vegetable beds 0.8-1.6 m, farmhouse compounds 10-16 m wide with the
main house on the north side, roads 2.5-8 m, trees 3-8 m across, poppy plots 1.5-200 m2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from datasets.scene.items import LAYERS, Item
from datasets.scene.materials import MATERIALS
from datasets.scene.materials.poppy import sample_poppy
from datasets.scene.season import STAGES, Season

__all__ = ["Confuser", "Layout", "Plot", "build_layout"]

PLOT_AREA_M2 = (1.5, 200.0)
SETTINGS = ("field", "bed", "courtyard", "edge", "interplanted")


@dataclass
class Plot:
    """A poppy plot: its label polygon (scene metres), stage, hiding place and host."""

    geom: Polygon
    stage: str
    setting: str
    host: str


@dataclass
class Confuser:
    """A hard negative placed in the scene (kind, e.g. ``red_roof``, and its geometry)."""

    kind: str
    geom: BaseGeometry


@dataclass
class Layout:
    """The whole scene as geometry (see module docstring)."""

    width_m: float
    height_m: float
    items: list[Item]
    footprint: Polygon
    plots: list[Plot]
    confusers: list[Confuser]
    summary: dict = field(default_factory=dict)
    _tree: shapely.STRtree | None = field(default=None, repr=False)

    def query(self, bounds: tuple[float, float, float, float]) -> list[Item]:
        """Items whose geometry touches ``bounds`` (u0, v0, u1, v1), in drawing order."""
        if self._tree is None:
            self._tree = shapely.STRtree([it.geom for it in self.items])
        idx = self._tree.query(box(*bounds))
        idx = sorted(int(i) for i in idx)
        return sorted((self.items[i] for i in idx), key=lambda it: it.layer)


# --- geometry helpers ----------------------------------------------------------------------------------------


def rect(cu: float, cv: float, hl: float, hw: float, ang: float) -> Polygon:
    """Rectangle centred at (cu, cv), half-length ``hl`` along ``ang`` (radians from +u), half-width ``hw``."""
    ca, sa = math.cos(ang), math.sin(ang)
    pts = [(sl * hl, sw * hw) for sl, sw in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    return Polygon([(cu + a * ca - x * sa, cv + a * sa + x * ca) for a, x in pts])


def polygons(g: BaseGeometry) -> list[Polygon]:
    """The polygon parts of a geometry."""
    if g.is_empty:
        return []
    if isinstance(g, Polygon):
        return [g]
    return [p for p in shapely.get_parts(g) if isinstance(p, Polygon) and not p.is_empty]


def _largest(g: BaseGeometry) -> Polygon | None:
    ps = polygons(g)
    return max(ps, key=lambda p: p.area) if ps else None


def _random_point_in(rng: np.random.Generator, g: BaseGeometry, tries: int = 50) -> Point | None:
    if g.is_empty or g.area <= 0:
        return None
    u0, v0, u1, v1 = g.bounds
    for _ in range(tries):
        p = Point(rng.uniform(u0, u1), rng.uniform(v0, v1))
        if g.contains(p):
            return p
    return None


def _blob(rng: np.random.Generator, cu: float, cv: float, r: float, n: int = 14, rough: float = 0.25) -> Polygon:
    """An irregular roundish polygon (tree crowns, weedy patches)."""
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    k = np.arange(1, 4)
    amp = rng.normal(0, rough, 3) / k
    ph = rng.uniform(0, 2 * math.pi, 3)
    rr = r * (
        1 + (amp[None, :] * np.cos(k[None, :] * ang[:, None] + ph[None, :])).sum(1) + rng.normal(0, rough * 0.3, n)
    )
    rr = np.clip(rr, 0.4 * r, 1.6 * r)
    return Polygon(np.c_[cu + rr * np.cos(ang), cv + rr * np.sin(ang)]).buffer(0)


def shadow_of(geom: BaseGeometry, height: float, sun_dir: tuple[float, float], sun_len: float) -> BaseGeometry:
    """Ground shadow of a prism of ``height`` over ``geom`` (convex parts), without the footprint itself."""
    d = min(height * sun_len, 40.0)
    du, dv = sun_dir[0] * d, sun_dir[1] * d
    parts = []
    for p in polygons(geom):
        moved = affinity.translate(p, du, dv)
        parts.append(shapely.convex_hull(shapely.union(p, moved)))
    return unary_union(parts).difference(geom)


# --- the builder ---------------------------------------------------------------------------------------------


class _Builder:
    def __init__(self, rng: np.random.Generator, season: Season, width_m: float, height_m: float) -> None:
        self.rng = rng
        self.season = season
        self.W, self.H = width_m, height_m
        self.pad = 12.0
        self.extent = box(-self.pad, -self.pad, width_m + self.pad, height_m + self.pad)
        self.items: list[Item] = []
        self.confusers: list[Confuser] = []
        self.parcels: list[tuple[Polygon, str, float]] = []  # (geom, crop, strip angle)
        # (bed, angle, bed width, crop, bed start t0, bed period, parcel) of vegetable beds
        self.veg_beds: list[tuple] = []
        self.yards: list[Polygon] = []
        self.road_lines: list[tuple[LineString, float, str]] = []
        self.theta = math.radians(season.grid_angle_deg)
        self._built: BaseGeometry | None = None

    # items
    def add(self, material: str, geom: BaseGeometry, layer: str | int, z: float = 0.0, **params) -> Item:
        """Add an item; ``z`` is its height for shadows, ``params`` override the material's sampled ones."""
        p = MATERIALS[material].sample(self.rng, self.season, geom) if material != "poppy" else {}
        p.update(params)
        lay = LAYERS[layer] if isinstance(layer, str) else layer
        it = Item(material, geom, lay, int(self.rng.integers(2**31)), p, z)
        self.items.append(it)
        return it

    # --- roads -------------------------------------------------------------------------------------------
    def roads(self) -> BaseGeometry:
        rng, kind = self.rng, self.season.scene_kind
        u0, v0, u1, v1 = self.extent.bounds
        cx, cy = (u0 + u1) / 2, (v0 + v1) / 2
        diag = math.hypot(u1 - u0, v1 - v0)
        polys = []
        for axis in (0, 1):
            ang = self.theta + axis * math.pi / 2
            spacing = rng.uniform(70, 220) if kind == "fields" else rng.uniform(50, 140)
            off = rng.uniform(0, spacing)
            n0 = math.floor(-diag / 2 / spacing) - 1
            for k in range(n0, -n0 + 1):
                o = off + k * spacing - diag / 2 + diag / 2 % spacing
                if abs(o) > diag / 2:
                    continue
                ca, sa = math.cos(ang), math.sin(ang)
                pu, pv = cx - o * sa, cy + o * ca
                main = rng.random() < (0.25 if kind == "fields" else 0.45)
                rkind = (
                    str(rng.choice(["asphalt", "concrete"], p=[0.5, 0.5]))
                    if main
                    else ("concrete" if kind != "fields" and rng.random() < 0.6 else "dirt")
                )
                width = (
                    rng.uniform(5, 8) if main else (rng.uniform(3, 4.5) if rkind == "concrete" else rng.uniform(2.5, 4))
                )
                bend = rng.normal(0, 1.5 if rkind == "dirt" else 0.4)
                line = LineString(
                    [
                        (pu - ca * diag, pv - sa * diag),
                        (pu - sa * bend, pv + ca * bend),
                        (pu + ca * diag, pv + sa * diag),
                    ]
                )
                poly = line.buffer(width / 2, cap_style="flat")
                if not poly.intersects(self.extent):
                    continue
                self.add("road", poly, "road", kind=rkind, width=width, line=[list(c) for c in line.coords])
                self.road_lines.append((line, width, rkind))
                polys.append(line.buffer(width / 2 + rng.uniform(0.4, 1.5), cap_style="flat"))
        return unary_union(polys) if polys else Polygon()

    # --- village -------------------------------------------------------------------------------------------
    def village_zone(self) -> BaseGeometry:
        kind = self.season.scene_kind
        if kind == "fields":
            return Polygon()
        if kind == "village":
            return self.extent
        rng = self.rng
        ang = self.theta + rng.choice([0, math.pi / 2]) + rng.normal(0, 0.1)
        frac = rng.uniform(0.3, 0.7)
        u0, v0, u1, v1 = self.extent.bounds
        cx, cy = (u0 + u1) / 2, (v0 + v1) / 2
        big = 4 * (u1 - u0 + v1 - v0)
        # Half plane: the side of a line through a point frac of the way across.
        off = (frac - 0.5) * (v1 - v0)
        half = rect(cx - math.sin(ang) * (off - big / 2), cy + math.cos(ang) * (off - big / 2), big, big / 2, ang)
        return half.intersection(self.extent)

    def compounds(self, zone: BaseGeometry, roads: BaseGeometry) -> BaseGeometry:
        """Farmhouse compounds in rows along lanes; returns the built-up area to keep fields out of."""
        if zone.is_empty:
            return Polygon()
        rng = self.rng
        th = self.theta
        ca, sa = math.cos(th), math.sin(th)
        u0, v0, u1, v1 = zone.bounds
        cx, cy = (u0 + u1) / 2, (v0 + v1) / 2
        span = math.hypot(u1 - u0, v1 - v0) / 2 + 20
        used = []
        depth = rng.uniform(14, 22)
        lane = rng.uniform(3.0, 5.0)
        x = -span
        # The side of a compound facing north gets the main house (houses face south).
        north = np.array([0.0, -1.0])
        axes = {
            "+a": np.array([ca, sa]),
            "-a": np.array([-ca, -sa]),
            "+x": np.array([-sa, ca]),
            "-x": np.array([sa, -ca]),
        }
        north_side = max(axes, key=lambda k: float(axes[k] @ north))
        row = 0
        while x < span:
            # Lanes between every one or two rows of compounds (back to back).
            if row % 2 == 0:
                lx = x + lane / 2
                lu, lv = cx - lx * sa, cy + lx * ca
                line = LineString([(lu - ca * span * 2, lv - sa * span * 2), (lu + ca * span * 2, lv + sa * span * 2)])
                lpoly = line.buffer(lane / 2, cap_style="flat").intersection(zone)
                if not lpoly.is_empty:
                    self.add(
                        "road",
                        line.buffer(lane / 2, cap_style="flat"),
                        "road",
                        kind="concrete",
                        width=lane,
                        line=[list(c) for c in line.coords],
                    )
                    self.road_lines.append((line, lane, "concrete"))
                    used.append(lpoly)
                x += lane
            a = -span + rng.uniform(0, 10)
            while a < span:
                w = rng.uniform(10, 16)
                cu = cx + (a + w / 2) * ca - (x + depth / 2) * sa
                cv = cy + (a + w / 2) * sa + (x + depth / 2) * ca
                c = rect(cu, cv, w / 2, depth / 2, th)
                if zone.contains(c) and not c.intersects(roads):
                    self.compound(cu, cv, w, depth, north_side)
                    used.append(c)
                a += w + rng.choice([0.0, rng.uniform(0.3, 3.0)], p=[0.6, 0.4])
            x += depth
            row += 1
        return unary_union(used) if used else Polygon()

    def compound(self, cu: float, cv: float, w: float, d: float, north: str) -> None:
        rng, th = self.rng, self.theta
        if rng.random() < 0.1:  # a vacant lot or kitchen garden
            self.add(str(rng.choice(["grass", "bare"])), rect(cu, cv, w / 2 - 0.3, d / 2 - 0.3, th), "yard")
            return
        ca, sa = math.cos(th), math.sin(th)
        # Local frame: a along the row, x across; flip so that +x points to the north side.
        sgn_x = -1.0 if north == "-x" else 1.0
        hw, hd = w / 2, d / 2
        wall_t = rng.uniform(0.24, 0.4)
        wall_h = rng.uniform(1.8, 2.6)

        def at(a: float, x: float) -> tuple[float, float]:
            return cu + a * ca - x * sa, cv + a * sa + x * ca

        yard = rect(cu, cv, hw - wall_t, hd - wall_t, th)
        self.yards.append(yard)
        self.add("courtyard", yard, "yard", angle=th, centre=[cu, cv])
        if rng.random() < 0.85:
            for a, x, hl, hh in (
                (0, hd - wall_t / 2, hw, wall_t / 2),
                (0, -hd + wall_t / 2, hw, wall_t / 2),
                (hw - wall_t / 2, 0, wall_t / 2, hd),
                (-hw + wall_t / 2, 0, wall_t / 2, hd),
            ):
                pu, pv = at(a, x)
                self.add("wall", rect(pu, pv, hl, hh, th), "roof", z=wall_h)
        two = rng.random() < 0.25
        hdepth = rng.uniform(6, 9)
        hlen = hw - wall_t - rng.uniform(0, 1.0)
        mx = sgn_x * (hd - wall_t - hdepth / 2)
        if north in ("+a", "-a"):  # rows run north-south: the house sits at one end of the compound
            hdepth = min(hdepth, w * 0.6)
            ma = (1 if north == "+a" else -1) * (hw - wall_t - hdepth / 2)
            pu, pv = at(ma, 0)
            houses = [self.house(pu, pv, hd - wall_t - 0.3, hdepth / 2, th + math.pi / 2, two)]
        else:
            pu, pv = at(0, mx)
            houses = [self.house(pu, pv, hlen, hdepth / 2, th, two)]
        if rng.random() < 0.5:
            side = rng.choice([-1, 1])
            sl = rng.uniform(2.5, 4.0)
            pu, pv = at(side * (hw - wall_t - sl / 2), -sgn_x * 1.0)
            houses.append(self.house(pu, pv, sl / 2, min(hd - hdepth - 1.5, 4.0), th + math.pi / 2, False))
        # What is left open to the sky: yard contents go there, not under the roofs.
        yard = yard.difference(unary_union([h for h in houses if h is not None] or [Polygon()]).buffer(0.3))
        # Yard contents: a garden bed, clutter, a tarp, a vehicle, a tree.
        if rng.random() < 0.4:
            gw, gl = rng.uniform(1.2, 3.5), rng.uniform(2.0, min(7.0, w - 2))
            pu, pv = at(rng.uniform(-hw + gl / 2 + 0.6, hw - gl / 2 - 0.6), -sgn_x * (hd - wall_t - gw / 2 - 0.2))
            g = rect(pu, pv, gl / 2, gw / 2, th).intersection(yard)
            g = _largest(g) or Polygon()
            crop = str(rng.choice(["cabbage", "lettuce", "greens", "garlic", "flowers", "bare"]))
            if g.area < 1.0:
                crop = "none"
            if crop == "flowers":
                self.add("flowers", g, "garden")
                self.confusers.append(Confuser("ornamental_flowers", g))
            elif crop == "bare":
                self.add("bare", g, "garden")
            elif crop != "none":
                self.add("veg_ground", g, "garden", angle=th, off=0.0, period=gw + 1.0, bed=gw)
                self.add("bed", g, "garden", crop=crop, angle=th, t0=self._t_of(pu, pv, th) - gw / 2, width=gw)
                self.yards.append(g)
        for _ in range(rng.poisson(1.2)):
            p = self._in(yard.buffer(-0.8))
            if p is not None:
                self.add("clutter", _blob(rng, p.x, p.y, rng.uniform(0.3, 1.0), rough=0.3), "object", z=0.5)
        if rng.random() < 0.2:
            self.tarp(yard.buffer(-0.5), "object", 0.3)
        if rng.random() < 0.3:
            self.vehicle(yard.buffer(-2.4), th + rng.choice([0, math.pi / 2]) + rng.normal(0, 0.1))
        if rng.random() < 0.3:
            p = self._in(yard.buffer(-1.0))
            if p is not None:
                self.tree(p.x, p.y, rng.uniform(1.5, 3.5))

    def house(self, cu: float, cv: float, hl: float, hw: float, ang: float, two: bool) -> Polygon | None:
        """A house with a roof (and sometimes a tarp on it); returns its footprint."""
        rng = self.rng
        if hl < 1.0 or hw < 1.0:
            return None
        h = rng.uniform(6.5, 8.5) if two else rng.uniform(3.5, 5.0)
        g = rect(cu, cv, hl, hw, ang)
        # Heater position in the roof's frame: on the sunny (south) plane, anywhere along the ridge.
        it = self.add(
            "roof",
            g,
            "roof",
            z=h,
            angle=ang,
            centre=[cu, cv],
            half=[hl, hw],
            heater_pos=[float(rng.uniform(-hl + 1, hl - 1)) if hl > 1.2 else 0.0, float(-hw / 2)],
        )
        if it.params["kind"] == "red_tile":
            self.confusers.append(Confuser("red_roof", g))
        if rng.random() < 0.08:
            self.tarp(g.buffer(-0.5), LAYERS["roof"] + 1, h + 0.1)
        return g

    def tarp(self, where: BaseGeometry, layer, height: float) -> None:
        rng = self.rng
        p = self._in(where)
        if p is None:
            return
        g = rect(p.x, p.y, rng.uniform(0.6, 2.0), rng.uniform(0.5, 1.5), rng.uniform(0, math.pi))
        g = affinity.skew(g, rng.normal(0, 8), rng.normal(0, 8))
        it = self.add("tarp", g, layer, z=height)
        if it.params["colour_name"] in ("red", "orange"):
            self.confusers.append(Confuser("red_plastic", g))

    def vehicle(self, where: BaseGeometry, ang: float, tricycle: bool | None = None) -> None:
        rng = self.rng
        p = self._in(where)
        if p is None:
            return
        tri = rng.random() < 0.3 if tricycle is None else tricycle
        hl, hw = (
            (rng.uniform(1.4, 1.7), rng.uniform(0.55, 0.7))
            if tri
            else (rng.uniform(2.1, 2.45), rng.uniform(0.85, 0.93))
        )
        g = rect(p.x, p.y, hl, hw, ang).buffer(0.25, join_style="round").buffer(-0.25)
        it = self.add("vehicle", g, "object", z=1.5, angle=ang, centre=[p.x, p.y], half=[hl, hw], tricycle=tri)
        if it.params["colour_name"] == "red":
            self.confusers.append(Confuser("red_car", g))

    def tree(self, cu: float, cv: float, r: float) -> None:
        rng = self.rng
        crown = _blob(rng, cu, cv, r, n=18, rough=0.18)
        h = float(np.clip(r * rng.uniform(1.8, 3.5) + 1.5, 3, 18))
        it = self.add("tree", crown, "tree", z=h, centre=[cu, cv], radius=r)
        if it.params["blossom"] != "none":
            self.confusers.append(Confuser("blossom_tree", crown))

    def built_up(self) -> BaseGeometry:
        """Union of roofs and walls (buffered a little), computed once."""
        if self._built is None:
            roofs = [it.geom for it in self.items if it.material in ("roof", "wall")]
            self._built = unary_union(roofs).buffer(0.4) if roofs else Polygon()
        return self._built

    def _in(self, g: BaseGeometry) -> Point | None:
        if g.is_empty:
            return None
        return _random_point_in(self.rng, g)

    @staticmethod
    def _t_of(u: float, v: float, ang: float) -> float:
        return -u * math.sin(ang) + v * math.cos(ang)

    # --- fields ----------------------------------------------------------------------------------------------
    def fields(self, area: BaseGeometry) -> None:
        rng = self.rng
        for block in polygons(area):
            if block.area < 4:
                continue
            ang = self.theta + rng.choice([0, math.pi / 2]) + rng.normal(0, 0.03)
            for parcel in self.subdivide(block, ang):
                self.parcel(parcel, ang)

    def subdivide(self, block: Polygon, ang: float) -> list[Polygon]:
        rng = self.rng
        rot = affinity.rotate(block, -ang, origin=(0, 0), use_radians=True)
        x0, y0, x1, y1 = rot.bounds
        out = []
        y = y0
        wide = rng.uniform(5, 25)
        while y < y1:
            w = float(np.clip(rng.lognormal(math.log(wide), 0.45), 3.0, 40.0))
            ya, yb = y, min(y + w, y1)
            x = x0 - rng.uniform(0, 30)
            while x < x1:
                ln = rng.uniform(15, 120)
                e = rng.normal(0, 0.6, 4)
                q = Polygon([(x + e[0], ya), (x + ln + e[1], ya), (x + ln + e[2], yb), (x + e[3], yb)])
                x += ln
                piece = affinity.rotate(q, ang, origin=(0, 0), use_radians=True).intersection(block)
                bund = rng.uniform(0.15, 0.5)
                for p in polygons(piece.buffer(-bund, join_style="mitre")):
                    if p.area > 2.0:
                        out.append(p)
            y = yb
        return out

    def parcel(self, g: Polygon, ang: float) -> None:
        rng = self.rng
        crops = list(self.season.crop_weights)
        w = np.array([self.season.crop_weights[c] for c in crops])
        crop = str(rng.choice(crops, p=w / w.sum()))
        if crop == "vegetables":
            self.vegetables(g, ang)
        elif crop == "greenhouse":
            self.greenhouses(g, ang)
        elif crop == "orchard":
            self.add(str(rng.choice(["grass", "bare"])), g, "parcel")
            sp = rng.uniform(3.0, 5.0)
            inner = g.buffer(-1.0)
            for p in _grid_points(inner, sp, sp * rng.uniform(0.8, 1.3), ang, rng):
                self.tree(p[0], p[1], rng.uniform(1.0, 2.0))
        else:
            it = self.add(crop, g, "parcel")
            # Sow along the parcel most of the time.
            sown = crop in ("wheat", "corn", "garlic", "plastic_mulch", "bare") and "angle" in it.params
            if sown and rng.random() < 0.85:
                it.params["angle"] = float(ang + rng.choice([0, math.pi / 2], p=[0.8, 0.2]))
            if crop == "rapeseed":
                self.confusers.append(Confuser("rapeseed", g))
        self.parcels.append((g, crop, ang))

    def vegetables(self, g: Polygon, ang: float) -> None:
        rng = self.rng
        bed = rng.uniform(0.8, 1.6)
        path = rng.uniform(0.3, 0.5)
        period = bed + path
        off = rng.uniform(0, period)
        self.add("veg_ground", g, "parcel", angle=ang, off=off, period=period, bed=bed)
        rot = affinity.rotate(g, -ang, origin=(0, 0), use_radians=True)
        x0, y0, x1, y1 = rot.bounds
        k0 = math.floor((y0 - off) / period)
        crop = None
        for k in range(k0, k0 + int((y1 - y0) / period) + 2):
            t0 = off + k * period
            strip = affinity.rotate(box(x0 - 1, t0, x1 + 1, t0 + bed), ang, origin=(0, 0), use_radians=True)
            b = strip.intersection(g)
            if b.area < 0.5:
                continue
            if crop is None or rng.random() < 0.3:
                crop = str(
                    rng.choice(["cabbage", "lettuce", "greens", "garlic", "none"], p=[0.3, 0.25, 0.2, 0.15, 0.1])
                )
            if crop == "none":
                continue
            self.add("bed", b, "bed", crop=crop, angle=ang, t0=t0, width=bed)
            self.veg_beds.append((b, ang, bed, crop, t0, period, g))
            if crop in ("cabbage", "lettuce"):
                self.confusers.append(Confuser(f"{crop}_bed", b))

    def greenhouses(self, g: Polygon, ang: float) -> None:
        rng = self.rng
        self.add("bare", g, "parcel")
        big = rng.random() < 0.4
        w = rng.uniform(6, 9) if big else rng.uniform(1.0, 2.2)
        gap = rng.uniform(0.8, 2.0) if big else rng.uniform(0.4, 1.0)
        h = w * rng.uniform(0.3, 0.45) if big else w * rng.uniform(0.35, 0.5)
        rot = affinity.rotate(g, -ang, origin=(0, 0), use_radians=True)
        x0, y0, x1, y1 = rot.bounds
        t = y0 + rng.uniform(0, gap)
        while t + w < y1:
            r = affinity.rotate(box(x0 + 1.0, t, x1 - 1.0, t + w), ang, origin=(0, 0), use_radians=True)
            tun = r.intersection(g.buffer(-0.5))
            if tun.area > 2:
                self.add("greenhouse", tun, "parcel", z=h, angle=ang, t_centre=t + w / 2, width=w)
            t += w + gap

    # --- trees along roads, scattered --------------------------------------------------------------------
    def roadside(self, keep_out: BaseGeometry) -> None:
        rng = self.rng
        for line, width, _kind in self.road_lines:
            if rng.random() > 0.45:
                continue
            sp = rng.uniform(3.0, 7.0)
            r0 = rng.uniform(1.2, 3.0)
            for side in (-1, 1):
                if rng.random() < 0.3:
                    continue
                off = line.offset_curve(side * (width / 2 + rng.uniform(0.8, 2.0)))
                if off.is_empty:
                    continue
                for d in np.arange(rng.uniform(0, sp), off.length, sp):
                    p = off.interpolate(d)
                    if self.extent.contains(p) and not keep_out.contains(p) and rng.random() < 0.9:
                        self.tree(p.x + rng.normal(0, 0.2), p.y + rng.normal(0, 0.2), r0 * rng.uniform(0.8, 1.2))
            # A few vehicles on the road.
            for _ in range(rng.poisson(line.length / 250)):
                d = rng.uniform(0, line.length)
                p = line.interpolate(d)
                q = line.interpolate(min(d + 1, line.length))
                a = math.atan2(q.y - p.y, q.x - p.x)
                self.vehicle(Point(p.x, p.y).buffer(0.5), a, tricycle=rng.random() < 0.3)

    # --- confuser flower patches -------------------------------------------------------------------------------
    def flower_patches(self, n: int) -> None:
        rng = self.rng
        for _ in range(n):
            g = self._edge_strip(rng.uniform(2, 30), rng.uniform(0.6, 2.0))
            if g is None:
                continue
            it = self.add("flowers", g, "plot")
            self.confusers.append(
                Confuser(it.params["kind"] if it.params["kind"] == "corn_poppy" else "ornamental_flowers", g)
            )

    def _edge_strip(self, area: float, width: float, crops: tuple[str, ...] | None = None) -> Polygon | None:
        """A strip of about ``area`` m2 along the inside edge of a random parcel."""
        rng = self.rng
        cands = [p for p in self.parcels if crops is None or p[1] in crops]
        if not cands:
            return None
        for _ in range(10):
            g, _crop, _ang = cands[rng.integers(len(cands))]
            ring = LineString(g.exterior.coords)
            ln = min(area / width, ring.length * 0.5)
            s0 = rng.uniform(0, max(ring.length - ln, 1e-6))
            seg = shapely.ops.substring(ring, s0, s0 + ln)
            strip = _largest(seg.buffer(width, cap_style="flat").intersection(g))
            if strip is not None and strip.area > 1.0:
                return strip
        return None


def _grid_points(g: BaseGeometry, sa: float, sb: float, ang: float, rng) -> list[tuple[float, float]]:
    if g.is_empty:
        return []
    rot = affinity.rotate(g, -ang, origin=(0, 0), use_radians=True)
    x0, y0, x1, y1 = rot.bounds
    ca, s = math.cos(ang), math.sin(ang)
    out = []
    for x in np.arange(x0 + sa / 2, x1, sa):
        for y in np.arange(y0 + sb / 2, y1, sb):
            u, v = x * ca - y * s, x * s + y * ca
            if g.contains(Point(u, v)) and rng.random() < 0.93:
                out.append((u + rng.normal(0, 0.15), v + rng.normal(0, 0.15)))
    return out


def _footprint(rng: np.random.Generator, w: float, h: float) -> Polygon:
    """The valid area of the orthomosaic inside the scene: straight, stepped flight-block edges cut it."""
    scene = box(0, 0, w, h)
    if rng.random() < 0.3:
        return scene
    for _ in range(20):
        fp = scene
        for _cut in range(1 + int(rng.random() < 0.4)):
            ang = rng.uniform(0, 2 * math.pi)
            nrm = np.array([math.cos(ang), math.sin(ang)])
            tang = np.array([-nrm[1], nrm[0]])
            c = np.array([w / 2, h / 2])
            reach = abs(nrm[0]) * w / 2 + abs(nrm[1]) * h / 2
            d = rng.uniform(0.2, 0.9) * reach
            step = rng.uniform(0.06, 0.3) * max(w, h)
            big = 2 * math.hypot(w, h)
            pts = []
            s = -big
            off = 0.0
            while s < big:
                pts.append(c + tang * s + nrm * (d + off))
                s += step * rng.uniform(0.6, 1.4)
                pts.append(c + tang * s + nrm * (d + off))
                off = rng.normal(0, 0.02 * max(w, h))
            far = [c + tang * big + nrm * (-3 * big), c - tang * big + nrm * (-3 * big)]
            keep = Polygon([*pts, *far]).buffer(0)
            fp = fp.intersection(keep)
        fp = _largest(fp)
        if fp is not None and fp.area > 0.4 * w * h:
            return fp
    return scene


def build_layout(
    rng: np.random.Generator,
    season: Season,
    width_m: float,
    height_m: float,
    poppy: bool,
    stage: str,
    plot_area: tuple[float, float] = PLOT_AREA_M2,
) -> Layout:
    """Lay out a scene.

    Args:
        rng: The scene's generator (consumed in a fixed order: same seed, same layout).
        season: Scene-wide conditions (crop mix, scene kind, grid orientation, phase).
        width_m: Scene width in metres (columns x GSD).
        height_m: Scene height in metres (rows x GSD).
        poppy: Whether to place poppy plots.
        stage: ``vegetative|flowering|capsule`` for all plots, or ``mixed`` (per plot).
        plot_area: (min, max) plot area in m2. Above the default 200 m2 the plots may also fill whole parcels
            (setting ``whole_field``) and cover up to 60 % of the scene, so chips can lie wholly inside poppy.
    """
    b = _Builder(rng, season, width_m, height_m)
    b.add("margin", b.extent, 0)
    roads = b.roads()
    zone = b.village_zone()
    built = b.compounds(zone.difference(roads) if not zone.is_empty else zone, roads)
    farmland = b.extent.difference(roads)
    if not zone.is_empty:
        # Villages keep their compounds; their leftovers become kitchen gardens and fields too.
        farmland = farmland.difference(built.buffer(1.0))
    b.fields(farmland)
    b.roadside(built)
    area = width_m * height_m
    n_flowers = int(rng.poisson(area / 3000.0 * 0.8 + 0.3))
    b.flower_patches(n_flowers)
    for _ in range(rng.poisson(area / 4000.0)):
        b.tarp(farmland, "object", 0.2)
    footprint = _footprint(rng, width_m, height_m)
    plots = _place_plots(b, footprint, poppy, stage, plot_area) if poppy else []
    _clear_over_plots(b, plots)
    _add_shadows(b)
    summary = {
        "scene_kind": season.scene_kind,
        "parcels": {c: sum(1 for p in b.parcels if p[1] == c) for c in sorted({p[1] for p in b.parcels})},
        "items": len(b.items),
        "roads": len(b.road_lines),
        "houses": sum(1 for it in b.items if it.material == "roof"),
        "trees": sum(1 for it in b.items if it.material == "tree"),
    }
    return Layout(width_m, height_m, b.items, footprint, plots, b.confusers, summary)


# --- poppy plots ---------------------------------------------------------------------------------------------


def _target_area(rng: np.random.Generator, scene_area: float, plot_area: tuple[float, float] = PLOT_AREA_M2) -> float:
    lo, hi = plot_area
    # Plots of hidden-plot size stay under 8 % of the scene; whole-field runs may fill most of it.
    share = 0.08 if hi <= PLOT_AREA_M2[1] else 0.6
    hi = max(lo * 1.5, min(hi, scene_area * share))
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _oriented_patch(rng, p: Point, area: float, ang: float) -> Polygon:
    ratio = rng.uniform(1.0, 3.0)
    hl = math.sqrt(area * ratio) / 2
    hw = area / (4 * hl)
    r = rect(p.x, p.y, hl, hw, ang + rng.normal(0, 0.05))
    if rng.random() < 0.4:  # hand-dug plots are rarely square
        r = _blob(rng, p.x, p.y, math.sqrt(area / math.pi), n=12, rough=0.2)
    return r


def _place_plots(
    b: _Builder, footprint: Polygon, poppy: bool, stage: str, plot_area: tuple[float, float] = PLOT_AREA_M2
) -> list[Plot]:
    rng = b.rng
    safe = footprint.buffer(-0.5)
    area = b.W * b.H
    fields = plot_area[1] > PLOT_AREA_M2[1]
    n = 1 + int(rng.poisson(min(area / 2500.0, 30)))
    plots: list[Plot] = []
    taken: list[BaseGeometry] = []
    # Large plots are refused more often (clipped by their parcel below the minimum area): try longer.
    for _ in range(n * (12 if fields else 4)):
        if len(plots) >= n:
            break
        if fields:
            setting = str(rng.choice((*SETTINGS, "whole_field"), p=[0.2, 0.15, 0.1, 0.15, 0.1, 0.3]))
        else:
            setting = str(rng.choice(SETTINGS, p=[0.25, 0.2, 0.15, 0.2, 0.2]))
        st = stage if stage in STAGES else str(rng.choice(STAGES, p=[0.35, 0.45, 0.2]))
        made = _make_plot(b, setting, _target_area(rng, area, plot_area), safe)
        if made is None:
            continue
        geom, host, ground, extra = made
        geom = _largest(geom.intersection(safe))
        if geom is None or geom.area < plot_area[0] or any(geom.intersects(t) for t in taken):
            continue
        geom = shapely.set_precision(geom, 1e-4)
        if not isinstance(geom, Polygon) or geom.is_empty:
            continue
        p = sample_poppy(rng, st, b.season.phase)
        p.update(extra)
        p.update(ground=ground, setting=setting, soil=list(b.season.soil_rgb))
        if not ground:
            p["density"] = float(rng.uniform(3, 14))
        b.add("poppy", geom, "plot", **p)
        plots.append(Plot(geom, st, setting, host))
        taken.append(geom.buffer(1.0))
    return plots


def _make_plot(b: _Builder, setting: str, area: float, safe: BaseGeometry):
    """Polygon, host name, draw-ground flag and extra poppy params for a plot in ``setting``, or None."""
    rng = b.rng
    if setting == "courtyard":
        yards = [y for y in b.yards if y.intersects(safe)]
        if not yards:
            return None
        # Keep clear of house footprints and walls: the plot must be visible from above.
        y = yards[rng.integers(len(yards))].difference(b.built_up()).buffer(-0.3)
        p = _random_point_in(rng, y.intersection(safe))
        if p is None:
            return None
        g = _oriented_patch(rng, p, min(area, y.area * 0.6), b.theta).intersection(y)
        return g, "courtyard", True, {}
    if setting == "bed":
        beds = [bd for bd in b.veg_beds if bd[0].intersects(safe)]
        if not beds:
            return None
        bed, ang, width, crop, t0, period, parcel = beds[rng.integers(len(beds))]
        nb = int(np.clip(round(area / (width * 4)), 1, 3))
        length = area / (width * nb)
        p = _random_point_in(rng, bed.intersection(safe))
        if p is None:
            return None
        # Whole beds across (paths between them included), a stretch of them along.
        s0 = p.x * math.cos(ang) + p.y * math.sin(ang)
        q = box(s0 - length / 2, t0, s0 + length / 2, t0 + (nb - 1) * period + width)
        g = affinity.rotate(q, ang, origin=(0, 0), use_radians=True).intersection(parcel)
        rows = int(rng.integers(3, 6))
        return (
            g,
            f"bed:{crop}",
            True,
            {
                "angle": float(ang),
                "broadcast": False,
                "row": float(width / rows),
                "row_offset": float(t0),
                "paths": [float(period), float(width)],
            },
        )
    if setting == "whole_field":
        # A whole parcel sown with poppy (its bund left out): the largest that fits under ``area``.
        hosts = [p for p in b.parcels if p[1] not in ("greenhouse", "orchard") and p[0].intersects(safe)]
        if not hosts:
            return None
        # The parcels nearest in size to the target area (parcels come as they were laid out, not to order).
        hosts = sorted(hosts, key=lambda h: abs(math.log(h[0].area / area)))[:3]
        g, crop, ang = hosts[rng.integers(len(hosts))]
        return g.buffer(-0.3), crop, True, {"angle": float(ang + rng.choice([0, math.pi / 2]))}
    if setting == "edge":
        g = b._edge_strip(area, rng.uniform(0.6, 2.5))
        return (g, "field_edge", True, {}) if g is not None else None
    hosts = b.parcels
    if setting == "interplanted":
        hosts = [p for p in b.parcels if p[1] in ("wheat", "garlic", "corn", "vegetables", "grass")]
    else:
        hosts = [p for p in b.parcels if p[1] not in ("greenhouse", "orchard")]
    hosts = [h for h in hosts if h[0].intersects(safe)]
    if not hosts:
        return None
    g, crop, ang = hosts[rng.integers(len(hosts))]
    p = _random_point_in(rng, g.intersection(safe))
    if p is None:
        return None
    patch = _oriented_patch(rng, p, area, ang).intersection(g)
    return patch, crop, setting != "interplanted", {"angle": float(ang + rng.choice([0, math.pi / 2]))}


def _clear_over_plots(b: _Builder, plots: list[Plot]) -> None:
    """Remove trees, vehicles, clutter and tarps that would sit on top of a plot and hide its label."""
    if not plots:
        return
    cover = unary_union([p.geom for p in plots])
    drop = {
        id(it) for it in b.items if it.layer >= LAYERS["object"] and it.material != "roof" and it.geom.intersects(cover)
    }
    drop |= {id(it) for it in b.items if it.material in ("flowers", "tarp") and it.geom.intersects(cover)}
    b.items = [it for it in b.items if id(it) not in drop]
    kept = {id(it.geom) for it in b.items}
    b.confusers = [c for c in b.confusers if id(c.geom) in kept]


def _add_shadows(b: _Builder) -> None:
    sun_dir = (-math.sin(math.radians(b.season.sun_azimuth_deg)), math.cos(math.radians(b.season.sun_azimuth_deg)))
    k = 1.0 / math.tan(math.radians(b.season.sun_elevation_deg))
    shadows = []
    for it in b.items:
        if it.height <= 0.3 or it.material in ("tarp", "clutter"):
            continue
        if it.material == "tree":
            # The crown floats on its trunk: its shadow is the crown moved away from the sun, plus the trunk.
            d = min(it.height * 0.75 * k, 40.0)
            off = (sun_dir[0] * d, sun_dir[1] * d)
            cu, cv = it.params["centre"]
            trunk = LineString([(cu, cv), (cu + off[0] * 0.8, cv + off[1] * 0.8)]).buffer(0.15).difference(it.geom)
            if not trunk.is_empty:
                shadows.append(Item("shadow", trunk, LAYERS["shadow"], 0, {"opacity": 0.85}, it.height))
            g = affinity.translate(it.geom, *off).difference(it.geom)
            params = {"opacity": 0.88, "offset": list(off), "tree": {**it.params, "seed": it.seed}}
        else:
            g = shadow_of(it.geom, it.height, sun_dir, k)
            params = {"opacity": 0.92}
        if g.is_empty:
            continue
        shadows.append(Item("shadow", g, LAYERS["shadow"], int(b.rng.integers(2**31)), params, it.height))
    b.items.extend(shadows)
