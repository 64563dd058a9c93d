"""Colour helpers: materials are written in sRGB (what a newcomer can pick from a photo) and drawn in linear."""

from __future__ import annotations

import numpy as np

__all__ = ["lin", "lin_array"]


def lin(rgb: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """sRGB 0-255 -> linear reflectance-like float32 in [0, 1] (gamma 2.2)."""
    return np.power(np.asarray(rgb, np.float32) / np.float32(255.0), np.float32(2.2)).astype(np.float32)


def lin_array(colours: list[tuple[float, float, float]]) -> np.ndarray:
    """A palette ``[n, 3]`` of sRGB colours in linear."""
    return lin(np.asarray(colours, np.float32).reshape(-1, 3))
