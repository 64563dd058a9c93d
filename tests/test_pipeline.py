"""detect.pipeline.detect_plots: the one raster -> plots path, with a colour-rule 'model' whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import InputError
from detect.pipeline import detect_plots
from detect.vectorize import VectorParams, vectorize
from models.checkpoint import ModelSpec
from tests.conftest import north_up, write_geotiff

N = 160
GSD = 0.03
SPEC = ModelSpec(arch="fastunet", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), gsd_m=GSD, tile_size=64)


class RedRule(nn.Module):
    """Logit about +20 on red pixels, -10 on grey ones: fires exactly on the red squares."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (x[:, 0:1] - x[:, 1:2]) - 10.0


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A grey UTM orthomosaic with two red squares of 1.08 m2 and 0.72 m2."""
    rgb = np.full((3, N, N), 90, dtype=np.uint8)
    for r0, r1, c0, c1 in ((20, 50, 20, 60), (100, 130, 100, 120)):
        rgb[:, r0:r1, c0:c1] = np.array([230, 20, 20], dtype=np.uint8)[:, None, None]
    return write_geotiff(tmp_path / "site.tif", rgb, transform=north_up(GSD, (500000.0, 4400000.0)))


def test_temporary_probability_raster_is_removed(site: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    det = detect_plots(site, RedRule(), SPEC, VectorParams(threshold=0.5, min_area_m2=0.1), temp_dir=scratch)
    # 1.08 and 0.72 m2 drawn; the metric opening rounds the corners off (more, relatively, on the small one).
    assert [p.area_m2 for p in det.plots] == pytest.approx([1.07, 0.53], abs=0.01)
    assert det.plots[0].source == "site.tif"
    assert det.prob_path is None and not any(scratch.iterdir())


def test_kept_probability_raster_gives_the_same_plots(site: Path, tmp_path: Path) -> None:
    params = VectorParams(threshold=0.5, min_area_m2=1.0)
    det = detect_plots(site, RedRule(), SPEC, params, prob_path=tmp_path / "p.prob.tif", model_name="m")
    assert det.prob_path == tmp_path / "p.prob.tif" and det.prob_path.is_file()
    again = vectorize(det.prob_path, params, source="site.tif", model_name="m").plots
    assert [p.geometry.wkt for p in det.plots] == [p.geometry.wkt for p in again]
    assert len(det.plots) == 1  # the smaller square is under the minimum area
    with pytest.raises(InputError, match="already exists"):
        detect_plots(site, RedRule(), SPEC, params, prob_path=det.prob_path)


def test_sweep_matches_one_vectorise_per_threshold(site: Path, tmp_path: Path) -> None:
    params = VectorParams(min_area_m2=0.1)
    det = detect_plots(site, RedRule(), SPEC, params, thresholds=(0.3, 0.6), prob_path=tmp_path / "s.prob.tif")
    assert det.sweep is not None and sorted(det.sweep.plots) == [0.3, 0.6]
    for t, plots in det.sweep.plots.items():
        one = vectorize(det.prob_path, VectorParams(threshold=t, min_area_m2=0.1), source="site.tif").plots
        assert [p.geometry.wkt for p in plots] == [p.geometry.wkt for p in one]
    assert (det.sweep.height, det.sweep.width) == (N, N)
    with pytest.raises(ValueError, match="sweep"):
        _ = det.plots
