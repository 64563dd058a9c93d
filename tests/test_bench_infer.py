"""bench/infer.py's scenes and table (the timed runs themselves are for a quiet machine, not for CI)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bench = _load("bench_infer", ROOT / "bench" / "infer.py")


def test_parse_scenes() -> None:
    scenes = bench.parse_scenes("4096, cog:2048,300x200")
    assert [(s.height, s.width, s.cog) for s in scenes] == [(4096, 4096, False), (2048, 2048, True), (300, 200, False)]
    assert [s.label for s in scenes] == ["4096", "COG 2048", "300x200"]
    with pytest.raises(SystemExit, match="'big' is not SIZE"):
        bench.parse_scenes("4096,big")
    with pytest.raises(SystemExit, match="too small"):
        bench.parse_scenes("32")


def test_footprint_is_irregular_and_inside_the_raster() -> None:
    size = 400
    alpha = bench.footprint_strip(np.arange(size), size, size, np.array([0.3, 1.7, 4.0]))
    inside = alpha > 0
    assert 0.35 < inside.mean() < 0.65
    assert not inside[0].any() and not inside[-1].any() and not inside[:, 0].any() and not inside[:, -1].any()
    yy, xx = np.mgrid[:size, :size]
    ellipse = ((yy + 0.5 - size / 2) ** 2 + (xx + 0.5 - size / 2) ** 2) <= (0.8 * size / 2) ** 2
    assert (inside != ellipse).mean() > 0.03  # lobed, not a disc
    # Strips give the same mask as the whole (the scene is written strip by strip).
    top = bench.footprint_strip(np.arange(0, 150), size, size, np.array([0.3, 1.7, 4.0]))
    assert np.array_equal(top, alpha[:150])


def test_scene_and_cog_are_written_and_cached(tmp_path: Path) -> None:
    spec = bench.SceneSpec(600, 700, cog=True)
    path = bench.ensure_scene(tmp_path, spec, 0.03)
    plain = bench.scene_path(tmp_path, 600, 700, 0.03, False)
    assert path.name.endswith("-cog.tif") and plain.is_file()
    with rasterio.open(path) as ds:
        assert (ds.count, ds.height, ds.width, ds.block_shapes[0]) == (4, 600, 700, (512, 512))
        assert ds.overviews(1) == [2] and ds.colorinterp[3].name == "alpha"
        cog = ds.read()
    with rasterio.open(plain) as ds:
        assert np.array_equal(ds.read(), cog)
    assert 0.35 < (cog[3] > 0).mean() < 0.65
    mtime = path.stat().st_mtime_ns
    assert bench.ensure_scene(tmp_path, spec, 0.03) == path and path.stat().st_mtime_ns == mtime  # cached


def _result(run_one: float, forward: float, pure: float | None, tiles: int = 40) -> dict:
    timings = {"predict": run_one - 1, "vectorize": 0.5, "export": 0.3, "hash_input": 0.1, "total": run_one}
    timings["predict_detail"] = {"footprint": 0.1, "read": 2.0, "model": forward + 0.2, "blend_write": 0.4}
    return {
        "summary": {"timings_s": timings, "tiles": {"run": tiles, "total": 50}, "parameters": {"batch_size": 1}},
        "forward_s": forward,
        "pure_forward_s_per_tile": pure,
        "peak_rss_mb": 1000.0,
        "wall_s": run_one + 5,
        "rss_peak_mb": {"load_prepare": 700, "predict": 1000, "vectorise_export": 900},
        "rss_before_run_kb": 700 * 1024,
    }


def test_table_medians_and_efficiency() -> None:
    scene = bench.SceneSpec(4096, 4096)
    row = bench.SceneRow(scene, Path("x.tif"), [_result(20, 16, 0.4), _result(24, 16, 0.5), _result(30, 20, 0.5)], 0.03)
    assert row.run_one == 24
    assert row.efficiency() == pytest.approx(1.5)  # medians of 20/16, 24/16, 30/20
    assert row.efficiency_pure() == pytest.approx(1.25)  # medians of 20/(0.4*40), 24/(0.5*40), 30/(0.5*40)
    table = bench.throughput_table([row]).splitlines()
    assert table[0].split()[:4] == ["scene", "MP", "tiles", "runs"]
    cells = table[2].split()
    assert cells[:5] == ["4096", "16.8", "40/50", "3", "24.0"]
    km2 = 4096 * 4096 * 0.03**2 / 1e6
    assert float(cells[7]) == pytest.approx(km2 / (24 / 3600), abs=0.01)
    assert "run_one" in bench.stage_table([row])
    no_pure = bench.SceneRow(scene, Path("x.tif"), [_result(20, 16, None)], 0.03)
    assert no_pure.efficiency_pure() is None and bench.throughput_table([no_pure]).splitlines()[2].endswith("-")


peer = _load("bench_torchgeo_peer", ROOT / "bench" / "torchgeo_peer.py")


def test_peer_chip_offsets_and_stitching() -> None:
    # A GridGeoSampler query in CRS units -> raster rows and columns (north-up, 0.03 m pixels).
    left, top, res = 500000.0, 4000000.0, 0.03
    query = (slice(left + 448 * res, left + 960 * res), slice(top - 1000 * res, top - 488 * res), slice(0, 1))
    assert peer.chip_offset(query, left, top, res) == (488, 448)
    acc = np.zeros((6, 7), dtype=np.float32)
    count = np.zeros_like(acc)
    peer.stitch(acc, count, np.full((4, 4), 0.5, dtype=np.float32), 0, 0)
    peer.stitch(acc, count, np.full((4, 4), 1.0, dtype=np.float32), 3, 5)  # runs off the raster: clipped
    peer.stitch(acc, count, np.ones((4, 4), dtype=np.float32), 9, 9)  # wholly outside: nothing
    assert count.sum() == 16 + 3 * 2 and acc[3, 3] == 0.5 and acc[5, 6] == 1.0 and count[3, 5] == 1
    peer.stitch(acc, count, np.full((2, 2), 0.25, dtype=np.float32), 2, 2)  # overlap: summed, counted twice
    assert acc[3, 3] == 0.75 and count[3, 3] == 2


def test_int8_quantisation_runs_close_to_float(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import torch

    from models.checkpoint import load_checkpoint
    from models.runtime import OnnxRuntimeNet
    from tests.test_infer import tiny_checkpoint, write_ortho

    quant = _load("bench_quantize_int8", ROOT / "bench" / "quantize_int8.py")
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    calib = tmp_path / "calib"
    calib.mkdir()
    write_ortho(calib / "a.tif", height=200, width=220, footprint=(0, 200, 0, 110))
    model, spec = load_checkpoint(ckpt)
    tiles = quant.calibration_tiles(calib, spec, 64, 6)
    assert len(tiles) == 6 and all(t.shape == (1, 3, 64, 64) and t.dtype == np.float32 for t in tiles)
    with pytest.raises(SystemExit, match=r"no \.tif orthomosaic"):
        quant.calibration_tiles(tmp_path, spec, 64, 1)
    out = tmp_path / "int8.onnx"
    assert quant.main(quant.parse_args([str(ckpt), str(out), "--calibration", str(calib), "--tiles", "6"])) == 0
    x = torch.from_numpy(np.concatenate(tiles[:2]))
    with torch.inference_mode():
        want = model(x).numpy()
    got = OnnxRuntimeNet(out, 64)(x).numpy()
    assert got.shape == want.shape
    # int8: not equal, but the same picture (a broken scale or layout would decorrelate it).
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95


@pytest.mark.slow
def test_bench_table_end_to_end(tmp_path: Path) -> None:
    """The benchmark runs infer.py in child processes and prints its table (tiny model, tiny scene)."""
    import subprocess

    from tests.test_infer import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    cmd = [sys.executable, str(ROOT / "bench" / "infer.py"), "--scenes", "256,cog:256", "--model", str(ckpt)]
    cmd += ["--scene-dir", str(tmp_path / "scenes"), "--forward-sample", "2", "--json", str(tmp_path / "r.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith(("256 ", "COG 256 "))]
    assert [r[0] for r in rows] == ["256", "COG"]
    record = __import__("json").loads((tmp_path / "r.json").read_text())
    for scene in record["scenes"]:
        run = scene["runs"][0]
        assert run["forward_tiles"] == run["summary"]["tiles"]["run"] > 0  # every tile went through the wrapper
        assert run["warmup_tiles"] >= 0  # infer.py's estimate tiles, counted apart (not in run_one)
        assert 0 < run["forward_s"] < run["summary"]["timings_s"]["total"]
        assert run["pure_forward_s_per_tile"] > 0 and run["peak_rss_mb"] > 100


@pytest.mark.slow
def test_torchgeo_peer_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("torchgeo")
    import subprocess

    from tests.test_infer import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    cmd = [sys.executable, str(ROOT / "bench" / "torchgeo_peer.py"), "--scenes", "300", "--model", str(ckpt)]
    cmd += ["--scene-dir", str(tmp_path / "scenes")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    row = next(line.split() for line in res.stdout.splitlines() if line.startswith("300 "))
    assert int(row[2]) >= int(row[1]) > 0  # the peer runs every tile of the grid, ours skips those off the footprint
