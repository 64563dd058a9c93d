"""Raw flight frames: georeferencing math (detect/frames.py), tag reading and the flight run (detect/flight.py)."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import shapely
import torch
from PIL import Image
from pyproj import CRS, Transformer
from shapely.geometry import Point, Polygon, box, shape
from torch import nn

from core.errors import InputError
from core.geodesy import GEOD
from detect.flight import FlightOptions, find_frames, load_cameras, read_frame, run_flight
from detect.frames import (
    CAMERAS,
    ErrorBudget,
    Optics,
    Pose,
    Sighting,
    expected_error_m,
    frame_georeference,
    ground_offsets,
    merge_sightings,
    nadir_problem,
    parse_camera,
    pixels_to_crs,
    utm_crs,
)
from detect.pipeline import RunOptions
from models.checkpoint import ModelSpec
from tests.frames_kit import SITE_CRS, cut_frame, make_ortho

SHARED_REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
SPEC = ModelSpec(arch="fastunet", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), gsd_m=0.03, tile_size=64, name="red")


class RedRule(nn.Module):
    """Logit about +20 on red pixels, below -5 on green ones: fires exactly on the red plots."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (x[:, 0:1] - x[:, 1:2]) - 10.0


# --- pure math ---------------------------------------------------------------------------------------------------

OPTICS = Optics(height_px=300, width_px=400, pixel_mm=0.033, focal_mm=8.8)  # 3.75 mm per m of height


def test_nadir_ground_offsets_are_the_pinhole_scale() -> None:
    pose = Pose(36.1, 103.3, 88.0, 0.0)
    g = 88.0 * 0.033 / 8.8  # 0.33 m per pixel
    fwd, right = ground_offsets(pose, OPTICS, np.array([0.0, 150.0, 300.0]), np.array([0.0, 200.0, 400.0]))
    assert fwd == pytest.approx([150 * g, 0.0, -150 * g])  # the image's top is ahead
    assert right == pytest.approx([-200 * g, 0.0, 200 * g])


def test_tilted_camera_looks_ahead_and_rolled_camera_to_the_right() -> None:
    centre = (np.array([150.0]), np.array([200.0]))
    fwd, right = ground_offsets(Pose(36.1, 103.3, 50.0, 0.0, pitch_deg=-80.0), OPTICS, *centre)
    assert fwd[0] == pytest.approx(50.0 * math.tan(math.radians(10.0))) and right[0] == pytest.approx(0.0)
    fwd, right = ground_offsets(Pose(36.1, 103.3, 50.0, 0.0, roll_deg=5.0), OPTICS, *centre)
    assert right[0] == pytest.approx(50.0 * math.tan(math.radians(5.0))) and fwd[0] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="horizon"):
        ground_offsets(Pose(36.1, 103.3, 50.0, 0.0, pitch_deg=0.0), OPTICS, *centre)


@pytest.mark.parametrize(
    ("pitch", "roll", "skipped"),
    [
        (-90.0, 0.0, False),
        (-80.5, 0.0, False),  # 9.5 degrees off
        (-79.0, 0.0, True),  # 11 off
        (-85.0, 8.0, False),  # 9.4 off together
        (-83.0, 8.0, True),  # 10.6 off together
        (-45.0, 0.0, True),
        (None, None, True),  # no pitch: cannot tell
    ],
)
def test_nadir_check(pitch: float | None, roll: float | None, skipped: bool) -> None:
    reason = nadir_problem(pitch, roll)
    assert (reason is not None) == skipped
    if skipped and pitch is not None:
        assert reason is not None and reason.startswith("oblique") and "at most 10" in reason


@pytest.mark.parametrize(
    ("lon", "lat", "epsg"),
    [(103.3, 36.1, 32648), (-91.99, 46.84, 32615), (-179.9, 10.0, 32601), (-47.9, -15.8, 32723)],
)
def test_utm_zone(lon: float, lat: float, epsg: int) -> None:
    assert utm_crs(lon, lat).to_epsg() == epsg


def _lonlat_of(crs: CRS, x: float, y: float) -> tuple[float, float]:
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)


@pytest.mark.parametrize("yaw", [0.0, 90.0, -140.0])
def test_georeference_puts_the_image_top_towards_the_heading(yaw: float) -> None:
    pose = Pose(36.1, 103.3, 88.0, yaw)
    crs = utm_crs(pose.lon, pose.lat)
    geo = frame_georeference(pose, OPTICS, crs)
    g = 88.0 * 0.033 / 8.8
    assert geo.gsd_m == pytest.approx(g * 0.99985, rel=2e-4)  # the UTM scale factor at 1.7 degrees off meridian
    assert geo.affine_residual_m < 0.01  # straight down: an affine is exact
    assert geo.footprint.area == pytest.approx((300 * g) * (400 * g) * 0.99985**2, rel=1e-3)
    # The middle of the top edge is 150 px * g ahead of the camera, along the heading (true north based).
    x, y = geo.transform * (200.0, 0.0)
    lon, lat = _lonlat_of(crs, x, y)
    az, _, dist = GEOD.inv(pose.lon, pose.lat, lon, lat)
    assert dist == pytest.approx(150 * g, rel=1e-3)
    assert (az - yaw + 180) % 360 - 180 == pytest.approx(0.0, abs=0.05)
    assert _lonlat_of(crs, *geo.centre) == pytest.approx((pose.lon, pose.lat), abs=1e-8)


def test_tilted_frame_residual_and_centre_shift() -> None:
    pose = Pose(36.1, 103.3, 88.0, 0.0, pitch_deg=-82.0)
    crs = utm_crs(pose.lon, pose.lat)
    geo = frame_georeference(pose, OPTICS, crs)
    # The ground below the image's centre is 88 * tan(8 degrees) = 12.4 m north of the camera.
    _, _, dist = GEOD.inv(pose.lon, pose.lat, *_lonlat_of(crs, *geo.centre))
    assert dist == pytest.approx(88.0 * math.tan(math.radians(8.0)), rel=1e-3)
    # Perspective an affine cannot follow: at 8 degrees over this wide view the scale varies by a tenth, 6 m at
    # the far corners. Plots are ray-cast instead, exactly.
    assert 4.0 < geo.affine_residual_m < 8.0
    x, y = pixels_to_crs(pose, OPTICS, crs, np.array([150.0]), np.array([200.0]))
    assert (x[0], y[0]) == pytest.approx(geo.centre, abs=1e-6)


def test_expected_error_budget() -> None:
    budget = ErrorBudget(gps_m=3.0, attitude_deg=1.0, yaw_deg=2.0, height_m=2.0)
    centre = expected_error_m(100.0, 0.0, budget)
    assert centre == pytest.approx(math.hypot(3.0, 100 * math.tan(math.radians(1.0))))
    corner = expected_error_m(100.0, 60.0, budget)
    assert corner == pytest.approx(
        math.sqrt(3.0**2 + (100 * math.tan(math.radians(1))) ** 2 + (60 * math.tan(math.radians(2))) ** 2 + 1.2**2)
    )
    rtk = expected_error_m(100.0, 0.0, budget, gps_m=0.05)
    assert rtk < 2.0 and expected_error_m(100.0, 0.0, budget, residual_m=4.0) > centre


def _sq(x: float, y: float, side: float = 1.5) -> Polygon:
    return box(x - side / 2, y - side / 2, x + side / 2, y + side / 2)


@pytest.mark.parametrize(
    ("sightings", "groups"),
    [
        # one plot in three frames, offset by GPS errors of a metre or two
        ([("a", 0, 0), ("b", 1.2, 0.5), ("c", -1.0, 1.5)], [[0, 1, 2]]),
        # two plots of one frame are never merged, however close
        ([("a", 0, 0), ("a", 2.0, 0)], [[0], [1]]),
        # two plots 3 m apart, both seen in frames a and b: each pairs with its twin, not the crossed one
        ([("a", 0, 0), ("a", 3.0, 0), ("b", 0.4, 0.2), ("b", 3.4, 0.2)], [[0, 2], [1, 3]]),
        # beyond the combined error (about 4.2 m for 3 m each) they stay apart
        ([("a", 0, 0), ("b", 7.0, 0)], [[0], [1]]),
        ([], []),
    ],
)
def test_merge_sightings(sightings: list[tuple[str, float, float]], groups: list[list[int]]) -> None:
    found = merge_sightings([Sighting(f, _sq(x, y), 3.0) for f, x, y in sightings])
    assert found == groups


def test_camera_flags(tmp_path: Path) -> None:
    assert parse_camera("13.2,8.8").sensor_width_mm == 13.2
    for bad in ("13.2", "a,b", "-1,8", "0,0"):
        with pytest.raises(InputError, match="--camera"):
            parse_camera(bad)
    table, forced = load_cameras("6.3,4.5")
    assert forced is not None and forced.focal_mm == 4.5 and table == dict(CAMERAS)
    f = tmp_path / "cams.json"
    f.write_text(json.dumps({"FC9999": {"sensor_width_mm": 6.3, "focal_mm": 4.5}}))
    table, forced = load_cameras(str(f))
    assert forced is None and table["FC9999"].sensor_width_mm == 6.3 and "FC6310" in table
    f.write_text(json.dumps({"FC9999": {"sensor_width_mm": 6.3}}))
    with pytest.raises(InputError, match=r"FC9999.*needs sensor_width_mm and focal_mm"):
        load_cameras(str(f))
    with pytest.raises(InputError, match="cannot read it as JSON"):
        load_cameras(str(tmp_path / "none.json"))


# --- tags ------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_REAL.is_dir(), reason="shared real test files not present")
def test_real_frames_tags() -> None:
    canon = read_frame(SHARED_REAL / "drone_photo_exif_gps_1.jpg")
    assert canon.model == "Canon PowerShot S110" and canon.focal_mm == pytest.approx(5.2)
    assert canon.lat == pytest.approx(41 + 13 / 60 + 34.93181999840141 / 3600)
    assert canon.lon == pytest.approx(-(81 + 42 / 60 + 19.803924003476965 / 3600))  # W is negative
    assert canon.height_m is None and canon.yaw_deg is None  # no DJI XMP: it would be skipped with that reason
    dji = SHARED_REAL / "negatives/brighton_beach_mn_park_DJI_0024.JPG"
    if dji.is_file():
        m = read_frame(dji)
        assert (m.make, m.model, m.height_m, m.pitch_deg, m.yaw_deg) == ("DJI", "FC300S", 39.9, -89.9, -140.0)
        assert m.yaw_source == "XMP GimbalYawDegree" and (m.height, m.width) == (2250, 4000)
        # A Phantom 3 (FC300S: 6.17 mm sensor, 3.61 mm lens) at 39.9 m: 1.70 cm/px, 68 m x 38 m on the ground.
        from detect.flight import _place, _skip_reason

        reason, camera = _skip_reason(m, FlightOptions())
        assert reason is None and camera is not None
        placed = _place(m, camera, utm_crs(m.lon or 0.0, m.lat or 0.0), ErrorBudget())
        assert placed.georef is not None
        assert placed.georef.gsd_m == pytest.approx(39.9 * 6.17 / 4000 / 3.61 * 0.9998, rel=1e-3)  # UTM 15N scale
        assert placed.georef.footprint.area == pytest.approx(4000 * 2250 * placed.georef.gsd_m**2, rel=1e-3)
        assert 3.0 < (placed.error_centre_m or 0) < (placed.error_corner_m or 0) < 4.5


def test_find_frames(tmp_path: Path) -> None:
    ortho = make_ortho(10.0, [])
    flight = tmp_path / "flight"
    flight.mkdir()
    cut_frame(flight / "DJI_0001.JPG", ortho, (0.0, 0.0), 9.0, 0.0)
    cut_frame(flight / "DJI_0002.jpg", ortho, (1.0, 0.0), 9.0, 0.0)
    assert [p.name for p in find_frames([flight]) or []] == ["DJI_0001.JPG", "DJI_0002.jpg"]
    assert find_frames([flight / "DJI_0002.jpg"]) == [flight / "DJI_0002.jpg"]
    plain = tmp_path / "plain.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(plain)
    assert find_frames([plain]) is None  # a JPEG without tags goes to the orthomosaic path (which says why)
    assert find_frames([plain], force=True) == [plain]
    (flight / "odm_orthophoto.tif").write_bytes(b"")
    assert find_frames([flight]) is None  # a folder with rasters is a folder of orthomosaics
    with pytest.raises(InputError, match="no JPEG frame"):
        find_frames([folder_without_jpegs(tmp_path)], force=True)


def folder_without_jpegs(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir(exist_ok=True)
    return d


# --- a flight end to end ---------------------------------------------------------------------------------------

PLOTS = {"A": (-6.0, 4.0), "B": (5.0, -3.0), "C": (1.0, 9.0)}  # true plot centres, site metres
SIDE = 1.6
# Each plot seen by two frames with different headings; GPS errors of up to a metre.
FRAMES = [
    ("DJI_0001.JPG", (-5.0, 3.0), 30.0, (0.8, -0.5)),
    ("DJI_0002.JPG", (-3.0, 2.0), 0.0, (0.3, 0.7)),
    ("DJI_0003.JPG", (5.0, -2.0), 200.0, (-0.6, 0.4)),
    ("DJI_0004.JPG", (3.0, -4.0), -75.0, (0.5, 0.5)),
    ("DJI_0005.JPG", (1.0, 8.0), 90.0, (-0.7, -0.2)),
    ("DJI_0006.JPG", (2.0, 6.0), 140.0, (0.0, -0.8)),
]
HEIGHT = 9.0  # m: 3.4 cm/px for 400 px wide frames of the FC6310


def _flight(tmp_path: Path, gps_error: bool) -> Path:
    ortho = make_ortho(20.0, [(x, y, SIDE) for x, y in PLOTS.values()])
    folder = tmp_path / "flight7"
    folder.mkdir()
    for name, centre, yaw, offset in FRAMES:
        cut_frame(folder / name, ortho, centre, HEIGHT, yaw, gps_offset=offset if gps_error else (0.0, 0.0))
    # Frames that cannot be placed, each for its own reason.
    cut_frame(folder / "DJI_0007.JPG", ortho, (0.0, 0.0), HEIGHT, 0.0, gps=False)
    cut_frame(folder / "DJI_0008.JPG", ortho, (0.0, 0.0), HEIGHT, 0.0, pitch=-60.0)
    cut_frame(folder / "DJI_0009.JPG", ortho, (0.0, 0.0), HEIGHT, 0.0, model="FC9999")
    cut_frame(folder / "DJI_0010.JPG", ortho, (0.0, 0.0), HEIGHT, 0.0, xmp=False)
    return folder


def _site_xy(lon: float, lat: float) -> tuple[float, float]:
    return Transformer.from_crs("EPSG:4326", SITE_CRS, always_xy=True).transform(lon, lat)


@pytest.mark.parametrize("gps_error", [False, True])
def test_flight_plots_placed_and_merged(tmp_path: Path, gps_error: bool) -> None:
    folder = _flight(tmp_path, gps_error)
    out = tmp_path / "out"
    options = RunOptions(out_dir=out, min_area_m2=0.5, batch_size=4, device="cpu", progress=False)
    lines: list[str] = []
    frames = find_frames([folder])
    assert frames is not None and len(frames) == 10
    result = run_flight(frames, RedRule(), SPEC, options, say=lines.append)

    assert len(result.plots) == 3, [p.properties() for p in result.plots]
    for p in result.plots:
        x, y = _site_xy(p.centroid_lon, p.centroid_lat)
        name, (tx, ty) = min(PLOTS.items(), key=lambda kv: math.dist(kv[1], (x, y)))
        off = math.dist((tx, ty), (x, y))
        # Exact frames land within a centimetre or so (measured 0.6-0.9 cm); GPS errors of up to a metre
        # move the plots by as much, and the acceptance is 2 m.
        assert off < (1.2 if gps_error else 0.05), (name, off)
        assert p.area_m2 == pytest.approx(SIDE**2, rel=0.15)
        assert len(p.frames) == 2 and p.properties()["seen_in"] == 2
        assert 3.0 <= p.position_error_m < 3.5  # the default 3 m GPS bound dominates at 9 m height
    by_plot = {p.plot_id: set(p.frames) for p in result.plots}
    assert sorted(map(sorted, by_plot.values())) == [
        ["DJI_0001.JPG", "DJI_0002.JPG"],
        ["DJI_0003.JPG", "DJI_0004.JPG"],
        ["DJI_0005.JPG", "DJI_0006.JPG"],
    ]
    # P001 is the northernmost (C), then A, then B.
    nearest = [
        min(PLOTS, key=lambda k: math.dist(PLOTS[k], _site_xy(p.centroid_lon, p.centroid_lat))) for p in result.plots
    ]
    assert nearest == ["C", "A", "B"]

    reasons = {f.name: f.reason for f in result.frames}
    assert reasons["DJI_0007.JPG"] == "no GPS position in the EXIF; only geotagged frames can be placed"
    assert reasons["DJI_0008.JPG"] is not None and reasons["DJI_0008.JPG"].startswith("oblique: gimbal pitch -60.0")
    assert reasons["DJI_0009.JPG"] is not None and "unknown camera FC9999 (DJI)" in reasons["DJI_0009.JPG"]
    assert reasons["DJI_0010.JPG"] is not None and reasons["DJI_0010.JPG"].startswith("no height above ground")
    assert all(reasons[n] is None for n, *_ in FRAMES)
    assert len(lines) == 10 and lines[7].startswith("DJI_0008.JPG: skipped: oblique")
    assert lines[0].startswith("DJI_0001.JPG: 1 detection(s), GSD 3.3")

    stem = "flight7"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"{stem}{s}" for s in (".geojson", ".gpkg", ".kml", ".csv", ".frames", ".footprints.geojson", ".summary.json")
    )
    gj = json.loads((out / f"{stem}.geojson").read_text())
    assert [f["properties"]["plot_id"] for f in gj["features"]] == ["P001", "P002", "P003"]
    assert gj["features"][0]["properties"]["frames"].count(";") == 1
    rows = list(csv.DictReader((out / f"{stem}.csv").open()))
    assert [r["seen_in"] for r in rows] == ["2", "2", "2"] and all(float(r["position_error_m"]) >= 3 for r in rows)
    fp = json.loads((out / f"{stem}.footprints.geojson").read_text())["features"]
    assert [f["properties"]["status"] for f in fp] == ["placed"] * 6 + ["skipped"] * 4
    assert fp[0]["geometry"]["type"] == "Polygon" and fp[6]["geometry"] is None  # no GPS: nowhere to put it
    assert fp[7]["geometry"]["type"] == "Point"  # oblique: its GPS position
    plot_a = gj["features"][1]["properties"]  # P002: plot A, seen by frames 1 and 2
    for k in (0, 1):
        assert Polygon(fp[k]["geometry"]["coordinates"][0]).contains(
            Point(plot_a["centroid_lon"], plot_a["centroid_lat"])
        )
    previews = sorted(p.name for p in (out / f"{stem}.frames").iterdir())
    assert previews == [f"DJI_000{i}.preview.jpg" for i in range(1, 7)]
    summary = json.loads((out / f"{stem}.summary.json").read_text())
    assert summary["frame_counts"] == {"total": 10, "placed": 6, "skipped": 4}
    assert summary["plots"]["count"] == 3 and summary["plots"]["detections"] == 6
    assert summary["crs"] == "EPSG:32648"
    with pytest.raises(InputError, match="already exists"):
        run_flight(frames, RedRule(), SPEC, options)


def test_tilted_frames_are_ray_cast(tmp_path: Path) -> None:
    """Frames 6 and 8 degrees off straight down (inside the nadir tolerance) see their plot a metre or more from
    where a straight-down camera would: the ray-cast puts it back within centimetres."""
    ortho = make_ortho(20.0, [(x, y, SIDE) for x, y in PLOTS.values()])
    folder = tmp_path / "tilted"
    folder.mkdir()
    cut_frame(folder / "a.jpg", ortho, (-6.5, 2.5), HEIGHT, 30.0, pitch=-84.0, tilted=True)
    cut_frame(folder / "b.jpg", ortho, (-5.0, 5.0), HEIGHT, 250.0, pitch=-82.0, tilted=True)
    options = RunOptions(out_dir=tmp_path / "out", min_area_m2=0.5, batch_size=4, device="cpu", progress=False)
    result = run_flight([folder / "a.jpg", folder / "b.jpg"], RedRule(), SPEC, options)
    assert [f.georef.affine_residual_m > 0.01 for f in result.frames if f.georef] == [True, True]
    assert len(result.plots) == 1 and set(result.plots[0].frames) == {"a.jpg", "b.jpg"}  # one plot, both frames
    off = math.dist(PLOTS["A"], _site_xy(result.plots[0].centroid_lon, result.plots[0].centroid_lat))
    assert off < 0.05, off  # ignoring the tilt would put it 0.9-1.3 m off


def test_flight_without_any_placeable_frame(tmp_path: Path) -> None:
    ortho = make_ortho(10.0, [])
    folder = tmp_path / "bad"
    folder.mkdir()
    cut_frame(folder / "a.jpg", ortho, (0.0, 0.0), HEIGHT, 0.0, gps=False)
    cut_frame(folder / "b.jpg", ortho, (0.0, 0.0), HEIGHT, 0.0, pitch=-30.0)
    options = RunOptions(out_dir=tmp_path / "out", device="cpu", progress=False)
    with pytest.raises(InputError, match=r"none of the 2 frame\(s\) could be placed: a.jpg: no GPS.*b.jpg: oblique"):
        run_flight([folder / "a.jpg", folder / "b.jpg"], RedRule(), SPEC, options, FlightOptions())
    assert not (tmp_path / "out").exists()


# --- infer.py ------------------------------------------------------------------------------------------------


def test_cli_flight(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from infer import main, parse_args
    from tests.test_infer import tiny_checkpoint

    folder = _flight(tmp_path, gps_error=False)
    for name in ("DJI_0003.JPG", "DJI_0004.JPG", "DJI_0005.JPG", "DJI_0006.JPG", "DJI_0008.JPG", "DJI_0009.JPG"):
        (folder / name).unlink()  # two overlapping frames and two skipped ones are enough here
    weights = tiny_checkpoint(tmp_path / "all.pt", all_poppy=True)  # every frame is one plot: all are found
    out = tmp_path / "out"
    # Large tiles: fewer forward passes of the tiny network (this test checks the wiring, not the tiling).
    args = [str(folder), "--out", str(out), "--weights", str(weights), "--quiet", "--device", "cpu", "--tile", "512"]
    assert main(parse_args(args)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[2].startswith("DJI_0007.JPG: skipped: no GPS position")
    assert lines[0].startswith("DJI_0001.JPG: 1 detection(s), GSD 3.37 cm, height 9.0 m")
    summary = json.loads((out / "flight7.summary.json").read_text())
    assert summary["plots"]["count"] == 1 and summary["plots"]["detections"] == 2  # the two frames' plots merged
    assert lines[-1].startswith("flight7: 1 plot(s), ") and "from 2 of 4 frame(s) placed" in lines[-1]
    assert summary["model"]["name"] == "tiny-test" and summary["kind"] == "flight frames"
    # Again without --overwrite: refused, one line.
    assert main(parse_args(args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "already exists; pass --overwrite" in err and "\n" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], r"error: none of the 2 frame\(s\) could be placed: a.jpg: no GPS position in the EXIF"),
        (["--camera", "13.2"], r"error: --camera 13.2: give the sensor width and the focal length in millimetres"),
        (["--gps-error-m", "-1"], r"error: --gps-error-m -1.0: must be 0 or more metres"),
    ],
)
def test_cli_frames_refused(tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str) -> None:
    from infer import main, parse_args
    from tests.test_infer import tiny_checkpoint

    ortho = make_ortho(10.0, [])
    folder = tmp_path / "bad"
    folder.mkdir()
    cut_frame(folder / "a.jpg", ortho, (0.0, 0.0), HEIGHT, 0.0, gps=False)
    cut_frame(folder / "b.jpg", ortho, (0.0, 0.0), HEIGHT, 0.0, pitch=-30.0)
    weights = tiny_checkpoint(tmp_path / "w.pt")
    args = [str(folder), "--out", str(tmp_path / "out"), "--weights", str(weights), "--quiet", "--device", "cpu"]
    assert main(parse_args([*args, *extra])) == 2
    err = capsys.readouterr().err.strip()
    assert re.match(message, err) and "\n" not in err
    assert not (tmp_path / "out").exists()


# --- a generated scene and the shipped model (slow) -------------------------------------------------------------


@pytest.mark.slow
def test_generated_scene_flight_with_the_shipped_model(tmp_path: Path) -> None:
    """Frames cut from a generated scene (datasets.synthetic) around its plots, two per plot at different headings
    and with GPS errors, searched with the shipped model: found plots lie within 2 m of the truth, and the two
    sightings of a plot are one plot."""
    from datasets.synthetic import render_scene
    from models.checkpoint import load_checkpoint
    from tests.frames_kit import ortho_from_scene

    scene = render_scene(tmp_path / "scene", "s", seed=3, size=2048, gsd_m=0.03, stage="flowering", crs="utm")
    lon, lat = scene["meta"]["centre_lonlat"]
    ortho = ortho_from_scene(Path(scene["image"]), lon, lat, 30.0)
    to_site = Transformer.from_crs("EPSG:4326", ortho.crs, always_xy=True)
    truth = [
        shapely.transform(shape(f["geometry"]), lambda xy: np.column_stack(to_site.transform(xy[:, 0], xy[:, 1])))
        for f in json.loads(Path(scene["labels"]).read_text())["features"]
    ]
    assert len(truth) == 2  # 38 m2 and 4.3 m2, flowering
    folder = tmp_path / "flight"
    folder.mkdir()
    for k, plot in enumerate(truth):
        c = plot.centroid
        for j, (dx, dy, yaw, gps) in enumerate([(3.0, 2.0, 20.0, (0.9, -0.4)), (-3.0, -2.5, 200.0, (-0.5, 0.8))]):
            cut_frame(
                folder / f"DJI_{2 * k + j + 1:04d}.JPG",
                ortho,
                (c.x + dx, c.y + dy),
                16.0,  # 3.0 cm/px for 800 px wide frames
                yaw,
                size=(600, 800),
                gps_offset=gps,
            )
    model, spec = load_checkpoint(None)
    options = RunOptions(out_dir=tmp_path / "out", device="cpu", progress=False)
    result = run_flight(find_frames([folder]) or [], model, spec, options)
    # Measured: both plots found in both of their frames and merged; centroids 1.0 m from the truth (the 0.98 m
    # GPS error written into the frame whose outline was kept), 40.0 m2 found of 38.0, 2.6 of 4.3.
    for k, plot in enumerate(truth):
        near = [p for p in result.plots if plot.distance(Point(to_site.transform(p.centroid_lon, p.centroid_lat))) < 2]
        own = {f"DJI_{2 * k + 1:04d}.JPG", f"DJI_{2 * k + 2:04d}.JPG"}
        seen = {f.name for f in result.frames if f.name in own and f.sightings}
        assert len(near) == 1, (k, [p.properties() for p in near])  # the two sightings are one plot
        assert set(near[0].frames) == seen == own
        offset = plot.centroid.distance(Point(to_site.transform(near[0].centroid_lon, near[0].centroid_lat)))
        assert offset < 2.0, (k, offset)


def test_camera_given_by_hand_places_an_unknown_camera(tmp_path: Path) -> None:
    from detect.flight import _place, _skip_reason
    from detect.frames import Camera

    ortho = make_ortho(10.0, [])
    meta = read_frame(cut_frame(tmp_path / "x.jpg", ortho, (0.0, 0.0), HEIGHT, 0.0, model="FC9999"))
    reason, _ = _skip_reason(meta, FlightOptions())
    assert reason is not None and reason.startswith("unknown camera FC9999 (DJI)")
    reason, camera = _skip_reason(meta, FlightOptions(camera=Camera(13.2, 17.6)))
    assert reason is None and camera is not None
    crs = utm_crs(meta.lon or 0.0, meta.lat or 0.0)
    # Given by hand, its focal length wins over the EXIF's 8.8 mm: half the GSD.
    placed = _place(meta, camera, crs, ErrorBudget(), forced=True)
    assert placed.georef is not None and placed.georef.gsd_m == pytest.approx(HEIGHT * 0.033 / 17.6, rel=1e-3)
    table = dict(CAMERAS, FC9999=Camera(13.2, 17.6))
    reason, camera = _skip_reason(meta, FlightOptions(cameras=table))
    placed = _place(meta, camera or Camera(1, 1), crs, ErrorBudget())  # from the table: the EXIF focal wins
    assert placed.georef is not None and placed.georef.gsd_m == pytest.approx(HEIGHT * 0.033 / 8.8, rel=1e-3)


def test_full_disk_stops_the_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk without room for a frame's temporary rasters stops the flight with one error (frames are not
    skipped one by one for it), and leaves nothing behind."""
    import shutil as shutil_module
    from collections import namedtuple

    folder = tmp_path / "flight"
    folder.mkdir()
    cut_frame(folder / "a.jpg", make_ortho(10.0, []), (0.0, 0.0), HEIGHT, 0.0)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_module, "disk_usage", lambda _: usage(10 << 30, 10 << 30, 5 << 20))
    options = RunOptions(out_dir=tmp_path / "out", device="cpu", progress=False)
    with pytest.raises(InputError, match=r"a.jpg's temporary rasters need about \d+ MB but the disk has 5 MB free"):
        run_flight([folder / "a.jpg"], RedRule(), SPEC, options)
    assert list((tmp_path / "out").iterdir()) == []


def test_flight_formats_pick_outputs(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    cut_frame(folder / "a.jpg", make_ortho(10.0, [(0.0, 0.0, SIDE)]), (0.5, 0.5), HEIGHT, 45.0)
    options = RunOptions(out_dir=tmp_path / "out", device="cpu", progress=False, formats=("csv", "prob"))
    result = run_flight([folder / "a.jpg"], RedRule(), SPEC, options, stem="site")
    # prob is an orthomosaic output: not written for frames; the footprints and the summary always are.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "site.csv",
        "site.footprints.geojson",
        "site.summary.json",
    ]
    assert result.summary["parameters"]["formats"] == ["csv"] and len(result.plots) == 1
