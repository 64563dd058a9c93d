"""Tests of the generalisation tests: the real-negatives split, composites, and the table arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from datasets.public import PublicChipDataset, open_public
from datasets.public.real_negatives import SPLIT, RealNegatives, frame_gsd_m
from detect.errors import InputError

SHARED_NEGATIVES = Path(__file__).resolve().parents[2] / "shared/data/real/negatives"


def _png(path: Path, value: int = 120, size: int = 64) -> None:
    data = np.full((3, size, size), value, dtype=np.uint8)
    with rasterio.open(path, "w", driver="PNG", height=size, width=size, count=3, dtype="uint8") as dst:
        dst.write(data)


# --- the fixed split ---------------------------------------------------------------------------------------------


def test_split_names_both_parts_and_only_two():
    assert set(SPLIT.values()) == {"train", "test"}
    assert sum(v == "test" for v in SPLIT.values()) >= 3


def test_negative_tiles_never_include_a_test_file(tmp_path):
    # Tiny stand-ins under the real names: the reader decides by name, so the split is tested without ../shared.
    test_name = next(n for n, s in SPLIT.items() if s == "test" and n.endswith(".jpg"))
    train_name = next(n for n, s in SPLIT.items() if s == "train" and n.endswith(".png"))
    _png(tmp_path / train_name.replace(".png", ".png"))
    with rasterio.open(tmp_path / test_name, "w", driver="JPEG", height=64, width=64, count=3, dtype="uint8") as d:
        d.write(np.full((3, 64, 64), 90, np.uint8))
    ds = open_public(f"real-negatives:{tmp_path}")
    assert isinstance(ds, RealNegatives)
    assert [t.key for t in ds.negative_tiles()] == [f"train/{Path(train_name).stem}"]
    assert [t.key for t in ds.tiles("test")] == [f"test/{Path(test_name).stem}"]
    # The chips train.py draws come from the training file only, whatever the seed.
    chips = PublicChipDataset(ds, ds.negative_tiles(), target_gsd_m=0.25, chip_size=16, chips_per_epoch=20,
                              labels="negative", min_usable_fraction=0.0)  # fmt: skip
    assert {chips.get_chip(i).tile for i in range(20)} == {0}


def test_unknown_file_is_refused(tmp_path):
    _png(tmp_path / "my_new_flight.png")
    with pytest.raises(InputError, match=r"my_new_flight.png is not in the fixed train/test split"):
        RealNegatives(tmp_path)


def test_black_outside_is_not_valid(tmp_path):
    name = "aukerman_oh_park_ortho_preview.png"
    data = np.full((3, 32, 32), 100, np.uint8)
    data[:, :8, :8] = 0
    with rasterio.open(tmp_path / name, "w", driver="PNG", height=32, width=32, count=3, dtype="uint8") as dst:
        dst.write(data)
    ds = RealNegatives(tmp_path)
    read = ds.read(ds.tile(name), Window(0, 0, 32, 32), (32, 32))
    assert read.valid.sum() == 32 * 32 - 64 and not read.valid[:8, :8].any()


@pytest.mark.skipif(not SHARED_NEGATIVES.is_dir(), reason="shared real negatives not present")
def test_shared_folder_is_fully_split_with_true_gsd():
    ds = RealNegatives(SHARED_NEGATIVES)
    assert sorted(ds.files) == sorted(SPLIT)  # every file there is named, none missing
    train = {t.key for t in ds.negative_tiles()}
    test = {t.key for t in ds.tiles("test")}
    assert train and test and not train & test
    # DJI FC300S at 40.1 m above take-off, 20 mm equivalent, 4000 px wide: 40.1 * 36 / (20 * 4000) = 1.80 cm.
    dji = SHARED_NEGATIVES / "brighton_beach_mn_park_DJI_0021.JPG"
    assert frame_gsd_m(dji, 4000) == pytest.approx(0.018045, abs=1e-5)
    # The Manila GeoTIFF's own transform: 0.10 Web-Mercator-like units at 14.6 N are 0.097 m on the ground.
    assert ds.file_gsd_m("manila_ph_river_roads_oam_10cm_3395.tif") == pytest.approx(0.0968, abs=5e-4)
