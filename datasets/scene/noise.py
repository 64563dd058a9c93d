"""Deterministic noise, hashed from global coordinates.

Every random-looking value the renderer draws (texture, a plant's position, a flower's colour, sensor noise)
is a pure function of *global* coordinates and an object's seed, never of a stateful generator. That is
what lets a scene be rendered window by window, in any window size, and still join without seams: a pixel
gets the same value whichever window computes it.

Two rules keep the values bit-identical across windows:

* integer lattice coordinates are hashed (``hash_u32``), so a lattice value never depends on the window;
* interpolation is done with element-wise numpy operations in a fixed order (no BLAS, no reductions whose
  length depends on the window), so the same inputs give the same floats.

:func:`noise_grid` (a window's rows x columns) and :func:`noise_pts` (scattered pixels) perform the same
operations in the same order and therefore return identical values for the same pixel; callers may pick
whichever is cheaper.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "fbm_grid",
    "fbm_pts",
    "gauss_u32",
    "hash_u32",
    "lattice_grid",
    "mix_seed",
    "noise_grid",
    "noise_pts",
    "unit",
]

_MASK32 = 0xFFFFFFFF
# Odd 32-bit constants (from murmur3 / xxhash) to spread each coordinate before mixing.
_PRIMES = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)
_C1 = np.uint32(0x85EBCA6B)
_C2 = np.uint32(0xC2B2AE35)
_S16 = np.uint32(16)
_S13 = np.uint32(13)


def mix_seed(seed: int, salt: int = 0) -> int:
    """Scramble ``seed`` (and a ``salt`` naming the use) into a 32-bit seed, in plain Python integers."""
    h = (int(seed) * 0x9E3779B1 + int(salt) * 0x85EBCA77 + 0x165667B1) & _MASK32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    h ^= h >> 16
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    """murmur3's finaliser: a cheap bijective avalanche on uint32 arrays (wrapping multiplies)."""
    h ^= h >> _S16
    h *= _C1
    h ^= h >> _S13
    h *= _C2
    h ^= h >> _S16
    return h


def _as_u32(c: np.ndarray | int) -> np.ndarray:
    # int64 -> uint32 wraps negative coordinates modulo 2**32, which is what a hash wants.
    return np.asarray(c, dtype=np.int64).astype(np.uint32)


def hash_u32(seed: int, *coords: np.ndarray | int) -> np.ndarray:
    """Hash integer coordinates (broadcast together) and a seed to uniformly distributed uint32 values."""
    h = np.asarray(np.uint32(mix_seed(seed)))
    for k, c in enumerate(coords):
        h = _fmix32((_as_u32(c) * np.uint32(_PRIMES[k % len(_PRIMES)])) ^ h)
    return h


def unit(h: np.ndarray) -> np.ndarray:
    """uint32 hash -> float32 uniform in [0, 1) (24 significant bits)."""
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def gauss_u32(h: np.ndarray) -> np.ndarray:
    """uint32 hash -> roughly standard normal float32 (sum of two 16-bit uniforms, Irwin-Hall)."""
    a = (h & np.uint32(0xFFFF)).astype(np.float32)
    b = (h >> np.uint32(16)).astype(np.float32)
    # Sum of two uniforms has variance 2/12; scale to unit variance.
    return (a + b - np.float32(65535.0)) * np.float32(2.449489743 / 65536.0)


def _axis(t: np.ndarray, smooth: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index and (smoothstep) weight for positions ``t`` in lattice units (float64)."""
    i0 = np.floor(t)
    f = (t - i0).astype(np.float32)
    if smooth:
        f = f * f * (np.float32(3.0) - np.float32(2.0) * f)
    return i0.astype(np.int64), f


def lattice_grid(v: np.ndarray, u: np.ndarray, cell: float, values, smooth: bool = True) -> np.ndarray:
    """Interpolate lattice values ``values(li, lj) -> float32 [len(li), len(lj)]`` onto the grid v x u.

    The lattice node ``(li, lj)`` sits at ``(v, u) = (li * cell, lj * cell)``. With ``smooth`` the weights
    are smoothstepped (value noise), else linear (a smooth field sampled on a coarse lattice).
    """
    i0, fi = _axis(np.asarray(v, dtype=np.float64) / cell, smooth)
    j0, fj = _axis(np.asarray(u, dtype=np.float64) / cell, smooth)
    li = np.arange(i0.min(), i0.max() + 2)
    lj = np.arange(j0.min(), j0.max() + 2)
    g = values(li[:, None], lj[None, :]).astype(np.float32)
    a = i0 - li[0]
    # Interpolate along rows first, then columns; noise_pts does the same operations in the same order.
    rows = g[a] * (np.float32(1.0) - fi)[:, None] + g[a + 1] * fi[:, None]
    b = j0 - lj[0]
    return rows[:, b] * (np.float32(1.0) - fj) + rows[:, b + 1] * fj


def noise_grid(v: np.ndarray, u: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Value noise in [-1, 1] on the grid ``v`` (rows) x ``u`` (columns), positions in metres.

    Args:
        v: 1-D float64 row coordinates (metres, growing southwards).
        u: 1-D float64 column coordinates (metres, growing eastwards).
        cell: Lattice spacing in metres (the feature size).
        seed: Noise seed.

    Returns:
        float32 array ``[len(v), len(u)]``.
    """
    return lattice_grid(v, u, cell, lambda i, j: unit(hash_u32(seed, i, j)) * np.float32(2.0) - np.float32(1.0))


def noise_pts(v: np.ndarray, u: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Value noise in [-1, 1] at scattered points; bit-identical to :func:`noise_grid` at the same point."""
    i0, fi = _axis(np.asarray(v, dtype=np.float64) / cell)
    j0, fj = _axis(np.asarray(u, dtype=np.float64) / cell)
    one, two = np.float32(1.0), np.float32(2.0)
    g00 = unit(hash_u32(seed, i0, j0)) * two - one
    g10 = unit(hash_u32(seed, i0 + 1, j0)) * two - one
    g01 = unit(hash_u32(seed, i0, j0 + 1)) * two - one
    g11 = unit(hash_u32(seed, i0 + 1, j0 + 1)) * two - one
    c0 = g00 * (one - fi) + g10 * fi
    c1 = g01 * (one - fi) + g11 * fi
    return c0 * (one - fj) + c1 * fj


def _octaves(cell: float, octaves: int, gain: float, gsd: float | None) -> list[tuple[float, float, float]]:
    """(cell, amplitude, offset) per octave.

    Octaves finer than a pixel fade out, as a sensor averages them away. A lacunarity slightly off 2 and a
    per-octave offset keep the lattices of successive octaves from lining up into a visible grid.
    """
    out = []
    amp = 1.0
    for k in range(octaves):
        a = amp
        if gsd is not None:
            a *= min(1.0, cell / (1.5 * gsd))
        if gsd is None or cell >= 0.35 * gsd:
            out.append((cell, a, (0.37 + 0.29 * k) * cell))
        cell /= 1.93
        amp *= gain
    return out


def fbm_grid(
    v: np.ndarray, u: np.ndarray, cell: float, seed: int, octaves: int = 3, gain: float = 0.5, gsd=None
) -> np.ndarray:
    """Fractal sum of :func:`noise_grid` octaves (cell, cell/1.93, ...), each with its own seed."""
    out = np.zeros((len(v), len(u)), np.float32)
    for k, (c, a, o) in enumerate(_octaves(cell, octaves, gain, gsd)):
        out += np.float32(a) * noise_grid(v + o, u + 0.61 * o, c, seed + 7919 * k)
    return out


def fbm_pts(
    v: np.ndarray, u: np.ndarray, cell: float, seed: int, octaves: int = 3, gain: float = 0.5, gsd=None
) -> np.ndarray:
    """Fractal sum of :func:`noise_pts` octaves; bit-identical to :func:`fbm_grid` at the same points."""
    out = np.zeros(np.shape(v), np.float32)
    for k, (c, a, o) in enumerate(_octaves(cell, octaves, gain, gsd)):
        out += np.float32(a) * noise_pts(v + o, u + 0.61 * o, c, seed + 7919 * k)
    return out
