"""Colour helpers: materials are written in sRGB (what a newcomer can pick from a photo) and drawn in linear."""

from __future__ import annotations

import numpy as np

__all__ = ["lin", "lin_array", "tinted"]


def lin(rgb: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """sRGB 0-255 -> linear reflectance-like float32 in [0, 1] (gamma 2.2)."""
    return np.power(np.asarray(rgb, np.float32) / np.float32(255.0), np.float32(2.2)).astype(np.float32)


def lin_array(colours: list[tuple[float, float, float]]) -> np.ndarray:
    """A palette ``[n, 3]`` of sRGB colours in linear."""
    return lin(np.asarray(colours, np.float32).reshape(-1, 3))


def tinted(base: np.ndarray, logb: np.ndarray, warm: np.ndarray, red: float = 0.6, green: float = 0.15) -> np.ndarray:
    """Linear colour ``base`` brightened by ``exp(logb)`` and warmed by ``warm`` per pixel: ``[n, 3]``.

    Warmth raises red by ``red * warm`` and green by ``green * warm`` (in log brightness) and lowers blue by
    ``warm``, the way dry and sunlit patches of soil or leaves shift towards yellow-brown.
    """
    f = np.float32
    return base * np.exp(np.stack([logb + warm * f(red), logb + warm * f(green), logb - warm], axis=-1))
