"""Plants drawn one by one as small sprites, at true size, seamlessly across windows.

A crop is a :class:`Lattice` of planting sites (rows across, plants along, jittered, some sites empty) and a
:class:`PlantLook` (canopy radius and height, leaves, colour, waxy sheen) with optional :class:`HeadLook`
slots (flowers, capsules, buds on top of the plant). Every site's attributes are hashed from its lattice
indices and the item seed, so a plant is the same plant whichever window draws it.

Drawing (:func:`draw_plants`) evaluates each plant only over its own little box of pixels:

1. foliage and heads go into z-buffers (``numpy.maximum.at`` on keys ``height << 32 | plant hash``: the
   result does not depend on the order plants are visited, so windows agree);
2. each plant's shadow disc is laid on the ground away from the sun (max over plants);
3. the winning leaf or head of every pixel is coloured and blended over what is already there (soil or a
   host crop), with coverage antialiasing so 5 cm flowers stay visible, as sub-pixel specks, at 5 cm/px.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from datasets.scene import noise
from datasets.scene.colour import lin, lin_array, tinted
from datasets.scene.context import WindowContext

__all__ = ["HeadLook", "Lattice", "PlantLook", "Sites", "draw_plants"]

_F = np.float32
_TWO_PI = 2.0 * math.pi
# Sprite pixels processed per chunk: bounds memory to a few tens of MB whatever the plot size.
_CHUNK = 600_000
# Longest plant shadow drawn (m): at a low sun a 1.3 m poppy throws about 2.5 m.
_MAX_SHADOW = 4.0


@dataclass(frozen=True)
class Lattice:
    """Planting sites: rows ``row_spacing`` apart in direction ``angle``, plants ``plant_spacing`` apart.

    Broadcast sowing (no rows) is a square lattice with ``jitter`` near 0.5 and ``keep`` < 1 (:meth:`broadcast`).

    Attributes:
        row_spacing: Metres between rows.
        plant_spacing: Metres between plants along a row.
        angle: Row direction in radians, from +u (east) towards +v (south).
        jitter_row: Random offset across the row, as a fraction of ``row_spacing`` (+-).
        jitter_along: Random offset along the row, as a fraction of ``plant_spacing`` (+-).
        keep: Probability that a site holds a plant.
        wobble: Amplitude in metres of the slow sideways wander of all rows (a hand-pushed seeder).
        wobble_len: Wavelength of that wander, metres.
        seed: Item seed.
        offset_t: Position across rows (m, in the rotated frame) of the first row boundary; hashed if None.
            Beds set it so that their rows sit centred in the bed.
    """

    row_spacing: float
    plant_spacing: float
    angle: float = 0.0
    jitter_row: float = 0.1
    jitter_along: float = 0.25
    keep: float = 1.0
    wobble: float = 0.0
    wobble_len: float = 12.0
    seed: int = 0
    offset_t: float | None = None

    @classmethod
    def broadcast(cls, per_m2: float, angle: float, keep: float, seed: int) -> Lattice:
        """Broadcast sowing: a square lattice of ``per_m2`` sites per square metre, jittered nearly at random."""
        a = 1.0 / math.sqrt(per_m2)
        return cls(a, a, angle, 0.45, 0.45, keep, seed=seed)

    def _frame(self) -> tuple[float, float, float, float, float]:
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        # A per-item origin and wobble phase, so that neighbouring parcels' rows do not line up.
        h = noise.mix_seed(self.seed, 11)
        os = (h & 0xFFFF) / 65536.0 * self.plant_spacing
        ot = (h >> 16) / 65536.0 * self.row_spacing if self.offset_t is None else self.offset_t
        ph = noise.mix_seed(self.seed, 12) / 2**32 * _TWO_PI
        return ca, sa, os, ot, ph

    def wob(self, s: np.ndarray, ph: float) -> np.ndarray:
        if self.wobble == 0.0:
            return np.zeros_like(s)
        return self.wobble * np.sin(s * (_TWO_PI / self.wobble_len) + ph)

    def sites(
        self, bounds: tuple[float, float, float, float], inside: Callable[[np.ndarray, np.ndarray], np.ndarray]
    ) -> Sites:
        """Sites whose centre lies in ``bounds`` (u0, v0, u1, v1, metres) and for which ``inside(u, v)``."""
        ca, sa, os, ot, ph = self._frame()
        a, b = self.row_spacing, self.plant_spacing
        u0, v0, u1, v1 = bounds
        cu = np.array([u0, u1, u0, u1])
        cv = np.array([v0, v0, v1, v1])
        s = cu * ca + cv * sa - os
        t = -cu * sa + cv * ca - ot
        i = np.arange(
            math.floor((t.min() - abs(self.wobble)) / a) - 1, math.floor((t.max() + abs(self.wobble)) / a) + 2
        )
        j = np.arange(math.floor(s.min() / b) - 1, math.floor(s.max() / b) + 2)
        ii, jj = np.meshgrid(i, j, indexing="ij")
        ii, jj = ii.ravel(), jj.ravel()
        keep = noise.unit(noise.hash_u32(self.seed, ii, jj)) < self.keep
        ii, jj = ii[keep], jj[keep]
        hj = noise.hash_u32(self.seed + 1, ii, jj)
        jt = ((hj & np.uint32(0xFFFF)).astype(np.float64) / 65536.0 - 0.5) * 2.0 * self.jitter_row
        js = ((hj >> np.uint32(16)).astype(np.float64) / 65536.0 - 0.5) * 2.0 * self.jitter_along
        sc = (jj + 0.5 + js) * b
        tc = (ii + 0.5 + jt) * a + self.wob(sc, ph)
        sc, tc = sc + os, tc + ot
        uc = sc * ca - tc * sa
        vc = sc * sa + tc * ca
        ok = (uc >= u0) & (uc < u1) & (vc >= v0) & (vc < v1)
        ii, jj, uc, vc = ii[ok], jj[ok], uc[ok], vc[ok]
        if len(ii):
            ok = inside(uc, vc)
            ii, jj, uc, vc = ii[ok], jj[ok], uc[ok], vc[ok]
        return Sites(ii, jj, uc, vc, self.seed)


@dataclass
class Sites:
    """Plants present in a window: lattice indices, centres (metres) and hashed attributes."""

    i: np.ndarray
    j: np.ndarray
    u: np.ndarray
    v: np.ndarray
    seed: int
    _uni: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.i)

    def uni(self, k: int) -> np.ndarray:
        """The plant's k-th uniform attribute in [0, 1), float32 (hashed, cached)."""
        if k not in self._uni:
            self._uni[k] = noise.unit(noise.hash_u32(self.seed + 101 * (k + 3), self.i, self.j))
        return self._uni[k]

    def h32(self, k: int) -> np.ndarray:
        """The plant's k-th raw 32-bit hash (for tie-breaks and per-leaf bits)."""
        key = ("h", k)
        if key not in self._uni:
            self._uni[key] = noise.hash_u32(self.seed + 7 * k + 5, self.i, self.j)
        return self._uni[key]


@dataclass(frozen=True)
class HeadLook:
    """Something on top of a plant: a flower, a seed capsule or a bud.

    Attributes:
        kind: ``"flower"``, ``"capsule"`` or ``"bud"``.
        prob: Chance that a head slot carries this kind (kinds are tried in order; their sum is <= 1).
        radius: Metres (a flower's radius is half its diameter: 5-12 cm flowers -> 0.025-0.06).
        radius_cv: Relative spread of the radius (+-).
        palette: Flowers: ``((sRGB, weight), ...)``; one colour per plant.
        spot_prob: Flowers: chance that a plant's flowers have a dark basal spot.
        spot_colour: sRGB of the spot.
        spot_frac: Spot radius as a fraction of the flower radius.
        colour: Capsules and buds: sRGB.
        crown_colour: Capsules: sRGB of the stigmatic crown on top.
        lean: Offset of the head from the plant centre, as a fraction of the canopy radius.
    """

    kind: str
    prob: float
    radius: float
    radius_cv: float = 0.2
    palette: tuple = ()
    spot_prob: float = 0.5
    spot_colour: tuple = (55, 20, 40)
    spot_frac: float = 0.32
    colour: tuple = (170, 185, 150)
    crown_colour: tuple = (125, 100, 90)
    lean: float = 0.5


@dataclass(frozen=True)
class PlantLook:
    """How one plant looks from above (true sizes in metres, colours in sRGB 0-255).

    The canopy is a lobed disc: ``lobes`` leaves around the centre, ``lobe_depth`` 0 (round) to 1 (star),
    ``lobe_sharp`` > 1 for narrow leaves. Height gives the dome shading and the length of the cast shadow.
    ``sheen`` is the waxy, glaucous bloom that makes poppy and cabbage leaves look grey-blue in sun.
    ``canopy_shade`` darkens leaves low in the canopy (0 for flat rosettes, ~0.6 for 1 m tall plants).
    """

    radius: float
    height: float
    radius_cv: float = 0.25
    height_cv: float = 0.2
    lobes: int = 6
    lobe_depth: float = 0.3
    lobe_sharp: float = 1.0
    leaf_len_var: float = 0.3
    aspect: float = 1.0
    colour: tuple = (100, 130, 90)
    colour_var: float = 0.12
    warm_var: float = 0.1
    leaf_var: float = 0.12
    centre_colour: tuple | None = None
    centre_frac: float = 0.0
    vein: float = 0.15
    vein_width: float = 0.006
    sheen: float = 0.0
    sheen_colour: tuple = (200, 215, 215)
    bump: float = 0.8
    tilt: float = 0.35
    grain: float = 0.06
    shadow_opacity: float = 0.8
    dry: float = 0.0
    dry_colour: tuple = (165, 150, 95)
    canopy_shade: float = 0.2
    fold: float = 0.3
    heads: tuple[HeadLook, ...] = ()
    head_slots: int = 0

    def shadow_reach(self, shadow_len: float) -> float:
        """How far (m) a plant's shadow can fall from its centre, for a sun with ``shadow_len`` m per m."""
        return min(self.height * (1 + self.height_cv) * 0.7 * shadow_len, _MAX_SHADOW) + self.radius * (
            1 + self.radius_cv
        )

    @property
    def reach(self) -> float:
        """Largest distance (m) from the plant centre that foliage or heads can cover."""
        r = self.radius * (1 + self.radius_cv) * (1 + self.leaf_len_var * 0.5) * max(1.0, self.aspect)
        for h in self.heads:
            r = max(r, self.radius * (1 + self.radius_cv) * h.lean + h.radius * (1 + h.radius_cv))
        return r


# --- sprite iteration -------------------------------------------------------------------------------------


def _iter_sprites(
    ctx: WindowContext, cu: np.ndarray, cv: np.ndarray, half: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(object index, window flat index, du, dv)`` for every pixel of each object's box in the window."""
    g = ctx.gsd
    b = ctx.box
    oy, ox = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1), indexing="ij")
    oy, ox = oy.ravel(), ox.ravel()
    pr = np.floor(cv / g).astype(np.int64)
    pc = np.floor(cu / g).astype(np.int64)
    per = max(1, _CHUNK // len(oy))
    for p0 in range(0, len(cu), per):
        p1 = min(len(cu), p0 + per)
        rows = pr[p0:p1, None] + oy[None, :]
        cols = pc[p0:p1, None] + ox[None, :]
        sel = (rows >= b.row_off) & (rows < b.row_off + b.height) & (cols >= b.col_off) & (cols < b.col_off + b.width)
        idx = np.broadcast_to(np.arange(p0, p1)[:, None], rows.shape)[sel]
        rr, cc = rows[sel], cols[sel]
        du = ((cc + 0.5) * g - cu[idx]).astype(_F)
        dv = ((rr + 0.5) * g - cv[idx]).astype(_F)
        yield idx, (rr - b.row_off) * b.width + (cc - b.col_off), du, dv


def _pixel_hash(ctx: WindowContext, seed: int, flat: np.ndarray) -> np.ndarray:
    """Hash of the global pixel behind window flat indices (never of window-relative values)."""
    r, c = np.divmod(flat, ctx.box.width)
    return noise.hash_u32(seed, r + ctx.box.row_off, c + ctx.box.col_off)


def _key(z: np.ndarray, zmax: float, tie: np.ndarray) -> np.ndarray:
    zq = np.clip(z * _F((2**24 - 1) / zmax), 0, 2**24 - 1).astype(np.int64)
    return (zq << 32) | tie.astype(np.int64)


# --- plant attributes ----------------------------------------------------------------------------------------


@dataclass
class _Plants:
    """Per-plant values derived from the sites and the look (arrays of length P)."""

    R: np.ndarray
    H: np.ndarray
    cos: np.ndarray
    sin: np.ndarray
    leaf_bits: np.ndarray
    tilt_bits: np.ndarray
    tie: np.ndarray
    bright: np.ndarray
    warm: np.ndarray
    dry: np.ndarray


def _plants(s: Sites, look: PlantLook) -> _Plants:
    rot = s.uni(2) * _F(_TWO_PI)
    return _Plants(
        R=_F(look.radius) * (_F(1) + _F(look.radius_cv) * (s.uni(0) * 2 - 1)),
        H=_F(look.height) * (_F(1) + _F(look.height_cv) * (s.uni(1) * 2 - 1)),
        cos=np.cos(rot),
        sin=np.sin(rot),
        leaf_bits=s.h32(1),
        tilt_bits=s.h32(2),
        tie=s.h32(3) >> np.uint32(1),
        bright=_F(look.colour_var) * (s.uni(3) * 2 - 1) * _F(1.7),
        warm=_F(look.warm_var) * (s.uni(4) * 2 - 1) * _F(1.7),
        dry=(s.uni(7) < look.dry).astype(_F) if look.dry > 0 else np.zeros(len(s), _F),
    )


def _bits(h: np.ndarray, leaf: np.ndarray) -> np.ndarray:
    """4 hashed bits per leaf index (0..7) as a uniform in [0, 1]."""
    return ((h >> (np.uint32(4) * (leaf & 7).astype(np.uint32))) & np.uint32(15)).astype(_F) * _F(1 / 15)


@dataclass
class _Shape:
    alpha: np.ndarray
    z: np.ndarray
    x: np.ndarray
    y: np.ndarray
    r: np.ndarray
    phi: np.ndarray
    reff: np.ndarray
    leaf: np.ndarray


def _foliage_shape(pl: _Plants, look: PlantLook, idx, du, dv, gsd: float) -> _Shape:
    c, s = pl.cos[idx], pl.sin[idx]
    x = du * c + dv * s
    y = -du * s + dv * c
    if look.aspect != 1.0:
        x = x * _F(1.0 / look.aspect)
    r = np.sqrt(x * x + y * y) + _F(1e-6)
    phi = np.arctan2(y, x)
    n = max(look.lobes, 1)
    pos = phi * _F(n / _TWO_PI)
    leaf = np.floor(pos + _F(0.5)).astype(np.int64) % n
    rad = pl.R[idx]
    if look.lobes > 0:
        prof = (_F(1) + np.cos(phi * _F(n))) * _F(0.5)
        if look.lobe_sharp != 1.0:
            prof = prof ** _F(look.lobe_sharp)
        ll = _F(1) + _F(look.leaf_len_var) * (_bits(pl.leaf_bits[idx], leaf) - _F(0.5))
        reff = rad * ll * (_F(1) - _F(look.lobe_depth) * (_F(1) - prof))
    else:
        reff = rad
    alpha = np.clip((reff - r) * _F(1.0 / gsd) + _F(0.5), 0, 1)
    q = np.clip(r / reff, 0, 1)
    # Leaves sit at different heights, so neighbouring plants interleave instead of tiling.
    z = pl.H[idx] * (_F(0.55) * (_F(1) - q * q) + _F(0.3) * _bits(pl.tilt_bits[idx], leaf))
    return _Shape(alpha, z, x, y, r, phi, reff, leaf)


# --- heads ---------------------------------------------------------------------------------------------------


@dataclass
class _Heads:
    plant: np.ndarray
    kind: np.ndarray  # index into look.heads
    u: np.ndarray
    v: np.ndarray
    r: np.ndarray
    z: np.ndarray
    rot: np.ndarray
    tie: np.ndarray


def _heads(s: Sites, pl: _Plants, look: PlantLook) -> _Heads | None:
    if not look.heads or look.head_slots == 0 or len(s) == 0:
        return None
    parts = []
    for k in range(look.head_slots):
        base = 20 + 6 * k
        pick = s.uni(base)
        kind = np.full(len(s), -1, np.int64)
        acc = 0.0
        for n, h in enumerate(look.heads):
            kind[(pick >= acc) & (pick < acc + h.prob)] = n
            acc += h.prob
        has = np.nonzero(kind >= 0)[0]
        if len(has) == 0:
            continue
        kk = kind[has]
        lean = np.array([h.lean for h in look.heads], _F)[kk]
        rad = np.array([h.radius for h in look.heads], _F)[kk]
        rcv = np.array([h.radius_cv for h in look.heads], _F)[kk]
        ang = s.uni(base + 1)[has] * _F(_TWO_PI)
        dist = pl.R[has] * lean * np.sqrt(s.uni(base + 2)[has])
        rr = rad * (_F(1) + rcv * (s.uni(base + 3)[has] * 2 - 1))
        parts.append(
            (
                has,
                kk,
                s.u[has] + (dist * np.cos(ang)).astype(np.float64),
                s.v[has] + (dist * np.sin(ang)).astype(np.float64),
                rr,
                pl.H[has] * (_F(0.95) + _F(0.1) * s.uni(base + 4)[has]),
                s.uni(base + 5)[has] * _F(_TWO_PI),
                (noise.hash_u32(s.seed + 977 + k, s.i[has], s.j[has]) >> np.uint32(1)),
            )
        )
    if not parts:
        return None
    cols = [np.concatenate([p[m] for p in parts]) for m in range(8)]
    return _Heads(*cols)


def _head_shape(hd: _Heads, look: PlantLook, idx, du, dv, gsd: float):
    d = np.sqrt(du * du + dv * dv) + _F(1e-6)
    rh = hd.r[idx]
    kinds = hd.kind[idx]
    reff = rh.copy()
    for n, h in enumerate(look.heads):
        m = kinds == n
        if not m.any():
            continue
        if h.kind == "flower":
            # Four broad, overlapping petals: a nearly round, slightly square outline.
            phi = np.arctan2(dv[m], du[m]) - hd.rot[idx[m]]
            reff[m] = rh[m] * (_F(0.86) + _F(0.14) * np.abs(np.cos(phi * _F(2))))
        elif h.kind == "bud":
            # A drooping, ovoid bud seen from above.
            c, s = np.cos(hd.rot[idx[m]]), np.sin(hd.rot[idx[m]])
            x = (du[m] * c + dv[m] * s) / _F(1.5)
            y = -du[m] * s + dv[m] * c
            dd = np.sqrt(x * x + y * y) + _F(1e-6)
            reff[m] = rh[m] * d[m] / dd
    alpha = np.clip((reff - d) * _F(1.0 / gsd) + _F(0.5), 0, 1)
    return alpha, d, reff


# --- drawing -------------------------------------------------------------------------------------------------


def draw_plants(
    ctx: WindowContext,
    sites: Sites,
    look: PlantLook,
    *,
    landcover: int | None = None,
) -> None:
    """Draw plants over what is already in the window (soil, or a host crop for interplanting).

    Args:
        ctx: The window.
        sites: Plants to draw (from :meth:`Lattice.sites` over the window's bounds plus ``look.reach``).
        look: How they look.
        landcover: If given, pixels covered by foliage at least half get this land-cover class.
    """
    if len(sites) == 0:
        return
    g = ctx.gsd
    b = ctx.box
    npx = b.height * b.width
    pl = _plants(sites, look)
    hd = _heads(sites, pl, look)
    # Top of the z-buffer keys: no leaf or head is higher.
    zmax = float(look.height * (1 + look.height_cv) * 1.2 + 0.1)
    half = math.ceil(look.reach / g) + 1

    # 1. z-buffers and coverage.
    zf = np.full(npx, -1, np.int64)
    af = np.zeros(npx, _F)
    for idx, flat, du, dv in _iter_sprites(ctx, sites.u, sites.v, half):
        sh = _foliage_shape(pl, look, idx, du, dv, g)
        on = sh.alpha > 0
        np.maximum.at(zf, flat[on], _key(sh.z[on], zmax, pl.tie[idx[on]]))
        np.maximum.at(af, flat[on], sh.alpha[on])
    zh = af_h = None
    hhalf = 0
    if hd is not None:
        zh = np.full(npx, -1, np.int64)
        af_h = np.zeros(npx, _F)
        hhalf = math.ceil(max(h.radius * (1 + h.radius_cv) for h in look.heads) / g) + 1
        for idx, flat, du, dv in _iter_sprites(ctx, hd.u, hd.v, hhalf):
            alpha, _, _ = _head_shape(hd, look, idx, du, dv, g)
            on = alpha > 0
            np.maximum.at(zh, flat[on], _key(hd.z[idx[on]], zmax, hd.tie[idx[on]]))
            np.maximum.at(af_h, flat[on], alpha[on])
    zpix = np.where(zf >= 0, (zf >> 32).astype(_F) * _F(zmax / (2**24 - 1)), _F(0))

    # 2. Shadows: a disc per plant at about 70 % of its height, laid on the ground away from the sun.
    k = ctx.sun.shadow_len
    sdu, sdv = ctx.sun.shadow_dir
    hc = pl.H * _F(0.7)
    disp = np.minimum(hc * _F(k), _F(_MAX_SHADOW)).astype(np.float64)
    rs = pl.R * _F(0.85)
    soft = _F(1.0 / max(g, look.radius * 0.25))
    # The sprite must hold the disc and its soft rim, or the rim would be cut square.
    shalf = math.ceil((look.radius * (1 + look.radius_cv) * 0.85 + 0.5 / float(soft)) / g) + 1
    sb = np.zeros(npx, _F)
    for idx, flat, du, dv in _iter_sprites(ctx, sites.u + disp * sdu, sites.v + disp * sdv, shalf):
        d = np.sqrt(du * du + dv * dv)
        a = np.clip((rs[idx] - d) * soft + _F(0.5), 0, 1) * _F(look.shadow_opacity)
        # Receivers above ~60 % of the caster's height are out of its shadow.
        recv = np.clip(_F(1) - zpix[flat] / np.maximum(hc[idx] * _F(0.9), _F(1e-3)), 0, 1)
        np.maximum.at(sb, flat, a * recv)
    touched = np.nonzero(sb > 0)[0]
    ctx.irr.reshape(-1)[touched] *= _F(1) - sb[touched]

    # 3. Colour the winning leaves and heads.
    _colour_foliage(ctx, sites, pl, look, half, zmax, zf, af, sb, landcover)
    if hd is not None:
        _colour_heads(ctx, sites, hd, look, hhalf, zmax, zh, af_h, zf)


def _cover(ctx: WindowContext, flat: np.ndarray, a: np.ndarray, col: np.ndarray, irr, sky) -> None:
    """Lay a plant's colour, irradiance and sky view over the window's layers at ``flat``, with coverage ``a``."""
    alb_w, irr_w, sky_w = ctx.albedo.reshape(-1, 3), ctx.irr.reshape(-1), ctx.sky.reshape(-1)
    old = alb_w[flat]
    alb_w[flat] = old + (col - old) * a[:, None]
    irr_w[flat] = irr_w[flat] + (irr - irr_w[flat]) * a
    sky_w[flat] = sky_w[flat] + (sky - sky_w[flat]) * a


def _colour_foliage(ctx, sites, pl, look, half, zmax, zf, af, sb, landcover) -> None:
    g = ctx.gsd
    base = lin(look.colour)
    cen = lin(look.centre_colour) if look.centre_colour is not None else None
    sheen = lin(look.sheen_colour)
    dry = lin(look.dry_colour)
    elev = ctx.elev.reshape(-1)
    lc = ctx.landcover.reshape(-1)
    sun = ctx.sun
    n = max(look.lobes, 1)
    for idx, flat, du, dv in _iter_sprites(ctx, sites.u, sites.v, half):
        sh = _foliage_shape(pl, look, idx, du, dv, g)
        win = (sh.alpha > 0) & (_key(sh.z, zmax, pl.tie[idx]) == zf[flat])
        if not win.any():
            continue
        w = np.nonzero(win)[0]
        idx, flat, du, dv = idx[w], flat[w], du[w], dv[w]
        r, reff, leaf, phi, z = sh.r[w], sh.reff[w], sh.leaf[w], sh.phi[w], sh.z[w]
        q = np.clip(r / reff, 0, 1)
        lb = _bits(pl.leaf_bits[idx] ^ np.uint32(0x5A5A5A5A), leaf)
        tb = _bits(pl.tilt_bits[idx] ^ np.uint32(0x3C3C3C3C), leaf)
        # Angular distance to the leaf's midrib, turned into metres to draw a vein of constant width.
        off = (phi * _F(n / _TWO_PI) + _F(0.5)) % _F(1.0) - _F(0.5)
        lateral = np.abs(off) * r * _F(_TWO_PI / n)
        vein = np.exp(-((lateral / _F(look.vein_width)) ** 2)) * (q > 0.12) if look.lobes > 0 else 0.0
        grain = noise.gauss_u32(_pixel_hash(ctx, sites.seed + 31, flat)) * _F(look.grain)
        logb = pl.bright[idx] + _F(look.leaf_var) * (lb - _F(0.5)) * _F(2) + vein * _F(look.vein) + grain
        logb = logb - _F(0.12) * q  # leaf tips curl down and darken
        col = tinted(base, logb, pl.warm[idx])
        if cen is not None and look.centre_frac > 0:
            t = np.clip((_F(look.centre_frac) - q) * _F(6.0), 0, 1)[:, None]
            col = col + (cen * np.exp(logb)[:, None] - col) * t
        if look.dry > 0:
            t = (pl.dry[idx] * (_F(0.4) + _F(0.6) * tb))[:, None]
            col = col + (dry * np.exp(logb)[:, None] - col) * t
        # Normals: the dome of the canopy plus a random facet tilt and twist per leaf.
        rad_u, rad_v = du / r, dv / r
        slope = _F(look.bump) * q + _F(look.tilt) * (tb - _F(0.3))
        # Each leaf is folded along its midrib: its two halves face a little apart, one lit, one shaded.
        twist = _F(look.tilt) * (lb - _F(0.5)) + _F(look.fold) * np.clip(off * _F(4), -1, 1) * (q > 0.1)
        nu = rad_u * slope - rad_v * twist
        nv = rad_v * slope + rad_u * twist
        nz = np.ones_like(nu)
        lit = sun.shading(nu, nv, nz)
        if look.sheen > 0:
            # Waxy bloom: a broad whitish highlight on leaves turned towards the sun.
            spec = np.clip(lit - _F(0.85), 0, None) * _F(look.sheen * 1.6)
            spec = np.minimum(spec, _F(0.8))[:, None]
            col = col + (sheen - col) * spec
        a = np.clip(af[flat], 0, 1)
        shade = _F(1) - sb[flat]
        # Inside a tall canopy the lower leaves get less sun (sun flecks aside) and less sky.
        depth = _F(1) - np.clip(z / np.maximum(pl.H[idx], _F(1e-3)), 0, 1)
        shade = shade * (_F(1) - _F(look.canopy_shade) * depth)
        occl = _F(1) - (_F(0.25) + _F(look.canopy_shade) * _F(0.5)) * depth
        _cover(ctx, flat, a, col, lit * shade, occl)
        cover = a >= 0.5
        elev[flat[cover]] = np.maximum(elev[flat[cover]], z[cover])
        if landcover is not None:
            lc[flat[cover]] = landcover


def _colour_heads(ctx, sites, hd: _Heads, look: PlantLook, hhalf, zmax, zh, ah, zf) -> None:
    g = ctx.gsd
    elev = ctx.elev.reshape(-1)
    sun = ctx.sun
    # Per-plant flower colour and spot (all flowers of a plant share them).
    palettes = []
    for h in look.heads:
        if h.kind == "flower" and h.palette:
            cols = lin_array([c for c, _ in h.palette])
            wts = np.cumsum([w for _, w in h.palette], dtype=np.float64)
            palettes.append((cols, wts / wts[-1]))
        else:
            palettes.append(None)
    pick = sites.uni(5)
    spot_u = sites.uni(6)
    for idx, flat, du, dv in _iter_sprites(ctx, hd.u, hd.v, hhalf):
        alpha, d, reff = _head_shape(hd, look, idx, du, dv, g)
        win = (alpha > 0) & (_key(hd.z[idx], zmax, hd.tie[idx]) == zh[flat])
        # Only where the head is above the foliage at that pixel.
        win &= (zh[flat] >> 32) >= (zf[flat] >> 32)
        if not win.any():
            continue
        w = np.nonzero(win)[0]
        idx, flat, du, dv, d, reff = idx[w], flat[w], du[w], dv[w], d[w], reff[w]
        q = np.clip(d / reff, 0, 1)
        kinds = hd.kind[idx]
        plant = hd.plant[idx]
        col = np.zeros((len(w), 3), _F)
        lit = np.ones(len(w), _F)
        grain = noise.gauss_u32(_pixel_hash(ctx, sites.seed + 57, flat))
        for n, h in enumerate(look.heads):
            m = kinds == n
            if not m.any():
                continue
            qm, gm = q[m], grain[m]
            rx = du[m] / (d[m])
            ry = dv[m] / (d[m])
            if h.kind == "flower":
                cols, cum = palettes[n]
                ci = np.minimum(np.searchsorted(cum, pick[plant[m]], side="right"), len(cols) - 1)
                c = cols[ci]
                # Cupped petals: darker towards the centre, a little brighter at the rim.
                c = c * (_F(0.72) + _F(0.32) * qm + _F(0.05) * gm)[:, None]
                spot = spot_u[plant[m]] < h.spot_prob
                ts = np.clip((_F(h.spot_frac) - qm) * _F(8.0), 0, 1) * spot
                c = c + (lin(h.spot_colour) - c) * ts[:, None]
                tc = np.clip((_F(0.13) - qm) * _F(14.0), 0, 1)
                c = c + (lin((165, 170, 105)) - c) * tc[:, None]
                col[m] = c
                # Petals tilt inwards (cup): lit on the side facing away from the sun.
                lit[m] = sun.shading(-rx * qm * _F(0.5), -ry * qm * _F(0.5), np.ones_like(qm)) * _F(0.9) + _F(0.15)
            elif h.kind == "capsule":
                nz = np.sqrt(np.clip(_F(1) - qm * qm, 0.02, 1))
                lit[m] = sun.shading(rx * qm, ry * qm, nz)
                c = lin(h.colour) * np.exp(_F(0.06) * gm)[:, None]
                # The flat, rayed stigmatic crown on top of the capsule.
                ang = np.arctan2(ry, rx) - hd.rot[idx[m]]
                rays = (np.cos(ang * _F(10)) > 0.2).astype(_F) * (qm < 0.42)
                crown = np.clip((_F(0.45) - qm) * _F(12), 0, 1) * (_F(0.55) + _F(0.45) * rays)
                c = c + (lin(h.crown_colour) - c) * crown[:, None]
                col[m] = c
            else:
                nz = np.sqrt(np.clip(_F(1) - qm * qm, 0.05, 1))
                lit[m] = sun.shading(rx * qm, ry * qm, nz)
                col[m] = lin(h.colour) * np.exp(_F(0.08) * gm)[:, None]
        a = ah[flat]
        _cover(ctx, flat, a, col, lit, _F(1))
        elev[flat] = np.maximum(elev[flat], hd.z[idx] * (a >= 0.5))
