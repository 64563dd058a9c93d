"""Tests for datasets/chips.py: chips at the model's GSD, nodata, balance, determinism, DataLoader workers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
import torch
from affine import Affine
from rasterio.crs import CRS
from torch.utils.data import DataLoader

from core.errors import InputError
from datasets.chips import ChipDataset, ChipSource
from datasets.transforms import Compose, RandomFlip, RandomRot90
from tests import conftest
from tests.conftest import north_up, write_geotiff

UTM = CRS.from_epsg(32650)
ORIGIN = (500000.0, 4400000.0)


def write_raster(path: Path, rgb: np.ndarray, gsd: float, alpha: np.ndarray | None = None, crs=UTM) -> Path:
    """A north-up uint8 GeoTIFF at ``gsd`` metres per pixel with its top-left corner at ORIGIN."""
    return write_geotiff(path, rgb, crs=crs, transform=north_up(gsd, ORIGIN), dtype="uint8", alpha=alpha)


def write_polygons(path: Path, polys: list[shapely.Polygon], crs: str = "EPSG:32650") -> Path:
    return conftest.write_polygons(path, polys, crs, {"stage": "flowering"})


def ground_box(x0: float, y0: float, w: float, h: float) -> shapely.Polygon:
    """A box ``w x h`` metres whose top-left corner is ``(x0, y0)`` metres east/south of ORIGIN."""
    return shapely.box(ORIGIN[0] + x0, ORIGIN[1] - y0 - h, ORIGIN[0] + x0 + w, ORIGIN[1] - y0)


def painted_scene(tmp_path: Path, name: str, gsd: float, size_m: float, plots: list[shapely.Polygon], alpha=None):
    """A grey raster with every plot painted red, its labels next to it; returns the raster path."""
    n = round(size_m / gsd)
    rgb = np.full((3, n, n), 60, dtype=np.uint8)
    transform = Affine(gsd, 0, ORIGIN[0], 0, -gsd, ORIGIN[1])
    if plots:
        inside = rasterio.features.rasterize([(p, 1) for p in plots], out_shape=(n, n), transform=transform) > 0
        rgb[0][inside] = 250
    tif = write_raster(tmp_path / f"{name}.tif", rgb, gsd, alpha=alpha(n) if alpha else None)
    write_polygons(tmp_path / f"{name}.geojson", plots)
    return tif


@pytest.fixture
def scene(tmp_path):
    """A 12.8 m square at 2.5 cm/px (512 px) with three small plots."""
    plots = [ground_box(2, 2, 1.0, 1.5), ground_box(8, 3, 0.8, 0.8), ground_box(4, 9, 1.2, 0.6)]
    return painted_scene(tmp_path, "site", 0.025, 12.8, plots), plots


# --- chips at the model's GSD --------------------------------------------------------------------------------


def test_finer_source_resampled_keeps_ground_area_and_alignment(scene):
    tif, plots = scene
    source = ChipSource(tif)  # labels found by the folder convention
    plot = plots[0]  # 1.0 x 1.5 m = 1.5 m^2 = 600 px at 5 cm
    row, col = source.to_pixel(plot.centroid.x, plot.centroid.y)
    window = source.chip_window(row, col, size=64, gsd_m=0.05)
    assert (window.height, window.width) == pytest.approx((128, 128), rel=1e-3)  # 2x finer: 128 source px
    rgb, mask = source.read_chip(window, 64)
    assert rgb.shape == (3, 64, 64)
    assert mask.shape == (64, 64)
    poppy = mask == 1
    assert int(poppy.sum()) == pytest.approx(plot.area / 0.05**2, rel=0.03)
    # The image and the mask line up: the red paint is where the mask says poppy.
    red = rgb[0] > 155
    iou = (red & poppy).sum() / (red | poppy).sum()
    assert iou > 0.9


def test_dataset_positive_chips_measure_the_plot_area(scene):
    tif, plots = scene
    ds = ChipDataset(
        ChipSource(tif), target_gsd_m=0.05, chip_size=96, chips_per_epoch=12, positive_fraction=1.0, seed=3
    )
    areas = {round(p.area / 0.05**2) for p in plots}  # 600, 256, 288 px
    for i in range(len(ds)):
        chip = ds.get_chip(i)
        assert chip.positive
        assert chip.image.dtype == torch.float32
        assert chip.image.shape == (3, 96, 96)
        assert chip.mask.dtype == torch.int64
        assert float(chip.image.min()) >= 0.0 and float(chip.image.max()) <= 1.0
        n = int((chip.mask == 1).sum())
        # Each plot (at most 1.5 m) fits in a 4.8 m chip centred within 1.2 m of a point inside it.
        assert min(abs(n - a) / a for a in areas) < 0.05


def test_scale_jitter_changes_the_gsd_and_the_pixel_area(scene):
    tif, plots = scene
    ds = ChipDataset(
        ChipSource(tif),
        target_gsd_m=0.05,
        chip_size=128,
        chips_per_epoch=20,
        positive_fraction=1.0,
        scale_jitter=0.25,
        centre_jitter=0.0,
        seed=1,
    )
    gsds, errors = [], []
    for i in range(len(ds)):
        chip = ds.get_chip(i)
        gsds.append(chip.gsd_m)
        ground = int((chip.mask == 1).sum()) * chip.gsd_m**2  # chip pixels back to m^2
        # The nearest true plot area; single chips are off by edge pixels (up to ~8 % for the 0.64 m^2 plot).
        errors.append(min(((ground - p.area) / p.area for p in plots), key=abs))
    assert max(abs(e) for e in errors) < 0.1
    assert abs(float(np.mean(errors))) < 0.02  # no bias: the GSD used for reading is the GSD reported
    assert 0.0375 <= min(gsds) < max(gsds) <= 0.0625
    assert max(gsds) - min(gsds) > 0.01  # it does jitter


def test_alpha_zero_is_ignore_and_black(tmp_path):
    def alpha(n):
        a = np.full((n, n), 255, dtype=np.uint8)
        a[:, : n // 2] = 0  # left half outside the footprint
        return a

    tif = painted_scene(tmp_path, "rgba", 0.05, 6.4, [ground_box(4, 2, 1, 1)], alpha=alpha)  # 128 px
    source = ChipSource(tif)
    rgb, mask = source.read_chip(source.chip_window(64, 64, size=128, gsd_m=0.05), 128)
    assert (mask[:, :64] == 255).all()
    assert (rgb[:, :, :64] == 0).all()
    assert not (mask[:, 64:] == 255).any()
    assert int((mask == 1).sum()) == 400
    # A window half off the raster: the outside is ignore too.
    rgb, mask = source.read_chip(source.chip_window(0, 96, size=64, gsd_m=0.05), 64)
    assert (mask[:32] == 255).all()
    assert (mask[32:] != 255).all()


def test_random_chips_avoid_mostly_invalid_windows(tmp_path):
    def alpha(n):
        a = np.zeros((n, n), dtype=np.uint8)
        a[n // 2 :, n // 2 :] = 255  # only the bottom-right quarter is valid
        return a

    tif = painted_scene(tmp_path, "sparse", 0.05, 12.8, [ground_box(10, 10, 1, 1)], alpha=alpha)
    ds = ChipDataset(ChipSource(tif), target_gsd_m=0.05, chip_size=32, chips_per_epoch=40, positive_fraction=0.0)
    chips = [ds.get_chip(i) for i in range(len(ds))]
    assert all(c.usable_fraction >= 0.5 for c in chips)
    assert all(float((c.mask != 255).float().mean()) >= 0.5 for c in chips)
    assert max(c.tries for c in chips) > 1  # rejection did happen
    assert ds.gave_up == 0


def test_random_chips_give_up_with_a_counted_warning(tmp_path, caplog):
    def alpha(n):
        a = np.zeros((n, n), dtype=np.uint8)
        a[:4, :4] = 255  # a sliver of footprint: no 32 px chip can be half valid
        return a

    tif = painted_scene(tmp_path, "sliver", 0.05, 12.8, [ground_box(0, 0, 0.1, 0.1)], alpha=alpha)
    ds = ChipDataset(
        ChipSource(tif), target_gsd_m=0.05, chip_size=32, chips_per_epoch=5, positive_fraction=0.0, max_tries=3
    )
    with caplog.at_level(logging.WARNING, logger="datasets.chips"):
        chips = [ds.get_chip(i) for i in range(len(ds))]
    assert ds.gave_up == 5
    assert all(c.tries == 3 and c.usable_fraction < 0.5 for c in chips)
    assert "1 random chip(s) in this process found no window" in caplog.text


def test_aoi_limits_random_chips_and_ignores_outside(tmp_path):
    tif = painted_scene(tmp_path, "aoi", 0.05, 12.8, [ground_box(1, 1, 1, 1)])
    write_polygons(tmp_path / "aoi.aoi.geojson", [ground_box(0, 0, 4, 4)])
    source = ChipSource(tif)
    assert source.aoi_path is not None and source.aoi_path.endswith("aoi.aoi.geojson")
    assert source.area_m2 == pytest.approx(16.0, rel=2e-3)  # UTM scale factor: grid metres ~ ground metres
    ds = ChipDataset(source, target_gsd_m=0.05, chip_size=32, chips_per_epoch=30, positive_fraction=0.0)
    for i in range(len(ds)):
        chip = ds.get_chip(i)
        # Random chips are centred inside the 4 x 4 m AOI (80 x 80 px at the raster's 5 cm).
        centre_row = float(chip.window.row_off) + float(chip.window.height) / 2
        centre_col = float(chip.window.col_off) + float(chip.window.width) / 2
        assert 0 <= centre_row <= 80 and 0 <= centre_col <= 80
    # Outside the AOI the mask is 255.
    _, mask = source.read_chip(source.chip_window(80, 80, size=64, gsd_m=0.05), 64)
    assert (mask[:32, :32] != 255).all()
    assert (mask[32:, :] == 255).all() and (mask[:, 32:] == 255).all()


# --- balance, weighting and determinism ----------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.8])
def test_positive_fraction_is_honoured(tmp_path, fraction):
    # Tiny plots in a large raster: random chips rarely touch one, positive chips always do.
    plots = [ground_box(5, 5, 0.5, 0.5), ground_box(40, 30, 0.5, 0.5)]
    tif = painted_scene(tmp_path, "big", 0.1, 51.2, plots)  # 512 px
    n = 300
    ds = ChipDataset(ChipSource(tif), target_gsd_m=0.1, chip_size=16, chips_per_epoch=n, positive_fraction=fraction)
    chips = [ds.get_chip(i) for i in range(n)]
    n_pos = sum(c.positive for c in chips)
    sd = (n * fraction * (1 - fraction)) ** 0.5
    assert abs(n_pos - n * fraction) <= 4 * sd + 1e-9
    # Positive chips really contain poppy; random ones almost never do here (2 x 0.25 m^2 in 2600 m^2).
    assert all(bool((c.mask == 1).any()) for c in chips if c.positive)
    n_hit = sum(bool((c.mask == 1).any()) for c in chips if not c.positive)
    assert n_hit <= 0.05 * (n - n_pos) + 2


def test_sources_weighted_by_area_and_positives_only_from_labelled(tmp_path):
    small = painted_scene(tmp_path, "small", 0.1, 6.4, [ground_box(1, 1, 1, 1)])  # 41 m^2
    big = painted_scene(tmp_path, "big", 0.1, 19.2, [])  # 369 m^2, no poppy (empty labels)
    ds = ChipDataset([ChipSource(small), ChipSource(big)], target_gsd_m=0.1, chip_size=16, chips_per_epoch=400, seed=5)
    chips = [ds.get_chip(i) for i in range(len(ds))]
    randoms = [c for c in chips if not c.positive]
    share_big = sum(c.source == 1 for c in randoms) / len(randoms)
    assert share_big == pytest.approx(0.9, abs=0.06)
    assert all(c.source == 0 for c in chips if c.positive)


def test_same_seed_same_items_other_epoch_or_seed_differs(scene):
    tif, _ = scene
    kwargs = dict(target_gsd_m=0.05, chip_size=32, chips_per_epoch=6, scale_jitter=0.2)
    a = ChipDataset(ChipSource(tif), seed=7, **kwargs)
    b = ChipDataset(ChipSource(tif), seed=7, **kwargs)
    for i in reversed(range(6)):  # order of access does not matter
        ia, ma = a[i]
        ib, mb = b[i]
        assert torch.equal(ia, ib) and torch.equal(ma, mb)
    first = [a[i][0] for i in range(6)]
    a.set_epoch(1)
    assert a.epoch == 1
    assert not all(torch.equal(x, a[i][0]) for i, x in enumerate(first))
    c = ChipDataset(ChipSource(tif), seed=8, **kwargs)
    assert not all(torch.equal(x, c[i][0]) for i, x in enumerate(first))


def test_transform_is_applied_with_the_items_rng(scene):
    tif, _ = scene
    calls = []

    def flip(image, mask, rng):
        calls.append(float(rng.random()))
        return image.flip(-1), mask.flip(-1)

    plain = ChipDataset(ChipSource(tif), target_gsd_m=0.05, chip_size=32, chips_per_epoch=3)
    flipped = ChipDataset(ChipSource(tif), target_gsd_m=0.05, chip_size=32, chips_per_epoch=3, transform=flip)
    for i in range(3):
        (fi, fm), (pi, pm) = flipped[i], plain[i]
        assert torch.equal(fi, pi.flip(-1))
        assert torch.equal(fm, pm.flip(-1))
    assert len(calls) == 3
    again = flipped[1]  # the transform's rng is the item's: the same draw again
    assert calls[3] == calls[1]
    assert torch.equal(again[0], flipped[1][0])


def test_dataloader_with_two_workers_matches_main_process(scene):
    tif, _ = scene
    ds = ChipDataset(ChipSource(tif), target_gsd_m=0.05, chip_size=32, chips_per_epoch=8, seed=2)
    ds.sources[0].dataset()  # an open handle in the parent must not leak into the workers
    expected = [ds[i] for i in range(8)]
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    images, masks = zip(*list(loader), strict=True)
    assert torch.equal(torch.cat(images), torch.stack([e[0] for e in expected]))
    assert torch.equal(torch.cat(masks), torch.stack([e[1] for e in expected]))
    assert masks[0].dtype == torch.int64
    # set_epoch reaches the persistent workers through shared memory.
    ds.set_epoch(3)
    expected3 = torch.stack([ds[i][0] for i in range(8)])
    images3 = torch.cat([b[0] for b in loader])
    assert torch.equal(images3, expected3)
    assert not torch.equal(images3, torch.cat(images))


# --- hard negatives --------------------------------------------------------------------------------------------

# Chips of HEAD before hard negatives existed (scene fixture, the dataset below, epoch 2): (positive, window
# row_off, col_off, height, poppy pixels). Pinned so that a change in the order of random draws shows up here,
# not as a silently different training run or a resume that no longer replays its epoch.
BEFORE_HARD_NEGATIVES = [
    (False, 125.4009, 441.7647, 66.3507, 0),
    (False, 196.8618, 441.2872, 65.8718, 0),
    (True, 360.0433, 188.4662, 54.3424, 168),
    (False, 225.8131, 242.3515, 68.9999, 0),
    (False, 5.5128, 38.7309, 69.1663, 0),
    (True, 341.1116, 150.6887, 62.7780, 288),
    (True, 60.7815, 54.1295, 62.3304, 418),
    (False, 28.7457, 66.4111, 73.1429, 170),
]


def pinned_dataset(tif: Path, **kwargs) -> ChipDataset:
    ds = ChipDataset(
        ChipSource(tif), target_gsd_m=0.05, chip_size=32, chips_per_epoch=8, scale_jitter=0.2, seed=11, **kwargs
    )
    ds.set_epoch(2)
    return ds


def same_chips(a: ChipDataset, b: ChipDataset) -> bool:
    return all(torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1]) for i in range(len(a)))


def test_hard_fraction_zero_keeps_the_chips_of_before(scene):
    tif, _ = scene
    plain = pinned_dataset(tif)
    got = []
    for i in range(len(plain)):
        c = plain.get_chip(i)
        w = c.window
        got.append((c.positive, round(w.row_off, 4), round(w.col_off, 4), round(w.height, 4), int((c.mask == 1).sum())))
        assert c.kind == ("positive" if c.positive else "random")
    assert got == [pytest.approx(row, abs=1e-4) for row in BEFORE_HARD_NEGATIVES]
    # hard_fraction 0 with hard negatives set changes nothing either.
    zero = pinned_dataset(tif, hard_fraction=0.0)
    zero.set_hard_negatives([[ground_box(6, 6, 1, 1)]])
    assert same_chips(zero, plain)


def test_hard_chips_fall_back_to_random_until_mined(scene):
    tif, _ = scene
    plain = pinned_dataset(tif)
    waiting = pinned_dataset(tif, hard_fraction=0.4)
    assert same_chips(waiting, plain)  # the random chips they would have been: the positive share is untouched
    assert {waiting.get_chip(i).kind for i in range(8)} == {"positive", "random"}
    waiting.set_hard_negatives([[shapely.box(0, 0, 1, 1)]])  # off the raster: clipped away, still nothing
    assert waiting.hard_count == 0
    assert same_chips(waiting, plain)


def test_hard_chips_share_centres_and_sources(tmp_path):
    first = painted_scene(tmp_path, "first", 0.1, 25.6, [ground_box(2, 2, 1, 1)])
    second = painted_scene(tmp_path, "second", 0.1, 25.6, [ground_box(3, 3, 1, 1)])
    kwargs = dict(target_gsd_m=0.1, chip_size=16, chips_per_epoch=400, positive_fraction=0.3, seed=6)
    big, tiny = ground_box(10, 10, 6, 6), ground_box(20, 4, 0.3, 0.3)  # 36 m^2 and 0.09 m^2
    ds = ChipDataset([ChipSource(first), ChipSource(second)], hard_fraction=0.25, **kwargs)
    ds.set_hard_negatives([[big, tiny], []])
    assert ds.hard_count == 2
    chips = [ds.get_chip(i) for i in range(len(ds))]
    plain = ChipDataset([ChipSource(first), ChipSource(second)], **kwargs)
    before = [plain.get_chip(i) for i in range(len(plain))]

    n = len(chips)
    hard = [c for c in chips if c.kind == "hard"]
    assert abs(len(hard) - 0.25 * n) <= 4 * (n * 0.25 * 0.75) ** 0.5
    assert all(c.source == 0 for c in hard)  # only the first raster has hard negatives
    assert not any(c.positive for c in hard)
    # The positive chips are the same chips as without hard negatives, and so is every other non-hard chip.
    assert [c.positive for c in chips] == [c.positive for c in before]
    for c, b in zip(chips, before, strict=True):
        if c.kind != "hard":
            assert c.window == b.window and torch.equal(c.mask, b.mask)
    # Centres lie within the jitter (half a half-chip: 0.4 m) of a hard polygon; both polygons get chips
    # though one is 400 times larger: polygons are drawn uniformly, not by area.
    transform = ds.sources[0].info.transform
    near_tiny = 0
    for c in hard:
        x, y = transform * (c.window.col_off + c.window.width / 2, c.window.row_off + c.window.height / 2)
        point = shapely.Point(x, y)
        assert min(point.distance(big), point.distance(tiny)) <= 0.5 * 0.8 * 2**0.5 + 1e-6
        near_tiny += point.distance(tiny) < point.distance(big)
    assert near_tiny / len(hard) == pytest.approx(0.5, abs=0.15)
    # Chips on the tiny patch show it: their masks hold no poppy (it is a negative), and they are all valid.
    assert all(int((c.mask == 1).sum()) == 0 and c.usable_fraction == 1.0 for c in hard)


def test_hard_chips_are_deterministic_and_reach_dataloader_workers(scene):
    tif, _ = scene
    ds = ChipDataset(ChipSource(tif), target_gsd_m=0.05, chip_size=32, chips_per_epoch=8, seed=2, hard_fraction=0.5)
    ds.set_hard_negatives([[ground_box(6, 6, 1, 1), ground_box(10, 1, 0.5, 0.5)]])
    ds.set_epoch(1)
    kinds = [ds.get_chip(i).kind for i in range(8)]
    assert "hard" in kinds
    expected = [ds[i] for i in range(8)]
    again = [ds[i] for i in reversed(range(8))][::-1]  # any order: item i depends on (seed, epoch, i) only
    assert all(torch.equal(a[0], b[0]) for a, b in zip(expected, again, strict=True))
    # A fresh, non-persistent loader (as training.loop.epoch_loader builds each epoch) hands the workers a copy
    # of the dataset taken when it is iterated: hard negatives set before then are seen there.
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    images = torch.cat([b[0] for b in loader])
    assert torch.equal(images, torch.stack([e[0] for e in expected]))
    ds.set_epoch(2)
    assert not all(torch.equal(ds[i][0], expected[i][0]) for i in range(8))


def test_hard_negatives_for_the_wrong_number_of_rasters_are_refused(tmp_path):
    a = painted_scene(tmp_path, "a", 0.1, 6.4, [ground_box(1, 1, 1, 1)])
    b = painted_scene(tmp_path, "b", 0.1, 6.4, [ground_box(1, 1, 1, 1)])
    ds = ChipDataset([ChipSource(a), ChipSource(b)], target_gsd_m=0.1, chip_size=16, hard_fraction=0.2)
    with pytest.raises(InputError, match=r"1 lists of hard negatives for 2 training rasters: give one list per raster"):
        ds.set_hard_negatives([[ground_box(3, 3, 1, 1)]])


# --- errors and the folder helper ----------------------------------------------------------------------------


def test_missing_labels_is_refused(tmp_path):
    tif = write_raster(tmp_path / "lonely.tif", np.zeros((3, 32, 32), np.uint8), 0.05)
    with pytest.raises(InputError, match=r"lonely\.tif: no labels found; save the poppy polygons.*lonely\.geojson"):
        ChipSource(tif)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_raster_without_georeferencing_is_refused(tmp_path):
    tif = tmp_path / "plain.tif"
    with rasterio.open(tif, "w", driver="GTiff", height=16, width=16, count=3, dtype="uint8") as ds:
        ds.write(np.zeros((3, 16, 16), np.uint8))
    write_polygons(tmp_path / "plain.geojson", [ground_box(0, 0, 1, 1)])
    with pytest.raises(InputError, match=r"plain\.tif: is an image without georeferencing"):
        ChipSource(tif)


def test_labels_elsewhere_are_refused(tmp_path):
    tif = write_raster(tmp_path / "site.tif", np.zeros((3, 32, 32), np.uint8), 0.05)
    write_polygons(tmp_path / "site.geojson", [shapely.box(0, 0, 1, 1)])  # near the UTM origin, not here
    with pytest.raises(InputError, match=r"none of its 1 label polygons fall on the raster"):
        ChipSource(tif)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_gsd_m": 0.0}, "target_gsd_m=0.0: must be > 0"),
        ({"positive_fraction": 1.5}, r"positive_fraction=1\.5"),
        ({"scale_jitter": 1.0}, r"scale_jitter=1\.0"),
        ({"chip_size": 4}, "chip_size=4"),
        ({"hard_fraction": -0.1}, r"hard_fraction=-0\.1: must be in \[0, 1\]"),
        (
            {"positive_fraction": 0.8, "hard_fraction": 0.3},
            r"positive_fraction=0\.8 \+ hard_fraction=0\.3: must not exceed 1",
        ),
    ],
)
def test_bad_settings_are_refused(scene, kwargs, match):
    tif, _ = scene
    args = {"target_gsd_m": 0.05, **kwargs}
    with pytest.raises(InputError, match=match):
        ChipDataset(ChipSource(tif), **args)


def test_explicit_paths_skip_the_folder_convention(tmp_path):
    tif = painted_scene(tmp_path, "site", 0.05, 6.4, [ground_box(1, 1, 1, 1)])
    write_polygons(tmp_path / "site.gpkg.geojson", [ground_box(3, 3, 1, 1)])  # not NAME.geojson: not found
    (tmp_path / "site.gpkg").write_text("")  # two label files: the convention would refuse to guess
    with pytest.raises(InputError, match="several label files"):
        ChipSource(tif)
    source = ChipSource(tif, tmp_path / "site.gpkg.geojson")
    assert source.labels.bounds == pytest.approx(tuple(ground_box(3, 3, 1, 1).bounds))


@pytest.mark.slow
def test_dataloader_with_spawned_workers(scene):
    # Spawned workers unpickle the dataset: the open handle must not travel, the epoch must.
    tif, _ = scene
    ds = ChipDataset(ChipSource(tif), target_gsd_m=0.05, chip_size=32, chips_per_epoch=4, seed=4)
    ds.sources[0].dataset()
    ds.set_epoch(2)
    expected = torch.stack([ds[i][1] for i in range(4)])
    loader = DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="spawn")
    assert torch.equal(torch.cat([m for _, m in loader]), expected)


def test_landcover_targets_follow_the_chip_and_its_augmentation(tmp_path) -> None:
    """With landcover=True a chip's target is [poppy mask, land cover], read on the same grid and moved together."""
    gsd = 0.03
    plots = [ground_box(0.3, 1.5, 1.2, 1.2)]  # on the west half
    tif = painted_scene(tmp_path, "lc", gsd, 3.84, plots)  # 128 px
    classes = np.full((128, 128), 2, dtype=np.uint8)  # wheat ...
    classes[:, 64:] = 8  # ... and road on the east half
    with rasterio.open(
        tmp_path / "lc.landcover.tif", "w", driver="GTiff", height=128, width=128, count=1, dtype="uint8",
        crs=UTM, transform=Affine(gsd, 0, ORIGIN[0], 0, -gsd, ORIGIN[1]),
    ) as ds:  # fmt: skip
        ds.write(classes, 1)
    source = ChipSource(tif)
    assert source.landcover_path == str(tmp_path / "lc.landcover.tif")
    flips = Compose([RandomFlip(), RandomRot90()])
    data = ChipDataset(source, target_gsd_m=gsd, chip_size=128, chips_per_epoch=4, landcover=True, transform=flips)
    chip = data.get_chip(0)
    assert chip.mask.shape == (2, 128, 128)
    # the chip lies wholly on the 128 px raster only when centred; compare where both are known
    lc = chip.mask[1]
    known = lc != 255
    assert known.float().mean() > 0.4
    assert set(torch.unique(lc[known]).tolist()) <= {2, 8}
    # poppy pixels and land cover come from the same window: the red plot sits on the wheat (west) half
    assert torch.all(lc[(chip.mask[0] == 1) & known] == 2)
    assert (chip.mask[0] == 1).sum() > 500
    plain = ChipDataset(source, target_gsd_m=gsd, chip_size=128, chips_per_epoch=4, transform=flips)
    assert torch.equal(plain.get_chip(0).mask, chip.mask[0])  # the poppy target is unchanged by the flag
    # a source without land cover gives an all-ignored second channel
    other = painted_scene(tmp_path, "nolc", gsd, 3.84, plots)
    bare = ChipDataset(ChipSource(other), target_gsd_m=gsd, chip_size=64, chips_per_epoch=2, landcover=True)
    assert torch.all(bare.get_chip(0).mask[1] == 255)
