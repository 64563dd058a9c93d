"""Inference path: raster I/O, tiling, prediction, stitching, vectorising and exports."""
