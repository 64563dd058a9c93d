"""Public data set readers on tiny fakes laid out exactly as published; chips at the model GSD; negatives;
per-class IoU; encoder weight transfer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window
from torch.utils.data import Dataset

from core.errors import InputError
from datasets.public import (
    AgricultureVision,
    LandCoverAI,
    LoveDA,
    MixedChipDataset,
    PublicChipDataset,
    SyntheticLandcover,
    normalise_spec,
    open_public,
    parse_spec,
    pretraining_split,
)
from datasets.public.agriculture_vision import CLASSES_2020, CLASSES_2021
from datasets.scene.items import LANDCOVER
from models import build_model
from models.checkpoint import ModelSpec, load_pretrained_into, save_checkpoint
from training.classes import ClassReport, class_iou, confusion_matrix

RGB = (200, 120, 40)  # distinct per channel, so a swapped band order shows
NIR = 90


def write_image(path: Path, array: np.ndarray, quality: int = 100) -> None:
    """Write a PNG or JPEG as the publishers do: colour arrays are given RGB (OpenCV stores BGR in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = array[..., ::-1] if array.ndim == 3 else array
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else []
    assert cv2.imwrite(str(path), np.ascontiguousarray(data), params)


# --- Agriculture-Vision ---------------------------------------------------------------------------------------

# One 512 x 512 tile: outside the field boundary left of column 64, no imagery below row 448, double_plant and
# weed_cluster overlapping in rows/cols 150-200, a 12 x 12 px (1.2 m x 1.2 m at 10 cm) water patch, storm damage.
DOUBLE, WEED, WATER = (100, 200, 100, 200), (150, 250, 150, 250), (300, 312, 300, 312)
STORM = (20, 40, 400, 420)


def write_av_tile(split_dir: Path, name: str, classes: tuple[str, ...] | None, storm: bool = False) -> None:
    valid = np.full((512, 512), 255, np.uint8)
    valid[448:] = 0
    boundary = np.full((512, 512), 255, np.uint8)
    boundary[:, :64] = 0
    rgb = np.empty((512, 512, 3), np.uint8)
    rgb[:] = RGB
    rgb[valid == 0] = 0
    write_image(split_dir / "images" / "rgb" / f"{name}.jpg", rgb)
    write_image(split_dir / "images" / "nir" / f"{name}.jpg", np.where(valid > 0, NIR, 0).astype(np.uint8))
    write_image(split_dir / "boundaries" / f"{name}.png", boundary)
    write_image(split_dir / "masks" / f"{name}.png", valid)
    if classes is None:  # the test split ships without labels
        return
    boxes = {"double_plant": DOUBLE, "weed_cluster": WEED, "water": WATER, "standing_water": WATER}
    if storm:
        boxes["storm_damage"] = STORM
    for c in (*classes[1:], *(["storm_damage"] if storm else [])):
        m = np.zeros((512, 512), np.uint8)
        if c in boxes:
            r0, r1, c0, c1 = boxes[c]
            m[r0:r1, c0:c1] = 255
        write_image(split_dir / "labels" / c / f"{name}.png", m)


@pytest.fixture(scope="module")
def agri(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Agriculture-Vision 2021 as extracted: train (two fields), val, test (unlabelled)."""
    root = tmp_path_factory.mktemp("av") / "Agriculture-Vision-2021"
    write_av_tile(root / "train", "1AD76MIZQ_1021-2339-1533-2851", CLASSES_2021, storm=True)
    write_av_tile(root / "train", "1AD76MIZQ_1533-2339-2045-2851", CLASSES_2021, storm=True)
    write_av_tile(root / "train", "7TQ2K49EC_512-0-1024-512", CLASSES_2021, storm=True)
    write_av_tile(root / "val", "Z3B2QY4DB_0-0-512-512", CLASSES_2021, storm=True)
    write_av_tile(root / "test", "CZM9P3WVE_0-512-512-1024", None)
    return root


def full(tile_size: int = 512) -> tuple[Window, tuple[int, int]]:
    return Window(0, 0, tile_size, tile_size), (tile_size, tile_size)


def test_agriculture_vision_decodes_overlaps_boundaries_invalid_pixels_and_bands(agri: Path) -> None:
    ds = open_public(f"agriculture-vision:{agri}")
    assert isinstance(ds, AgricultureVision) and ds.version == "2021" and ds.classes == CLASSES_2021
    assert ds.splits() == {"train": True, "val": True, "test": False}
    tiles = ds.tiles("train")
    assert [t.group for t in tiles] == ["1AD76MIZQ", "1AD76MIZQ", "7TQ2K49EC"]  # field id from the file name
    assert tiles[0].gsd_m == 0.10 and tiles[0].key == "train/1AD76MIZQ_1021-2339-1533-2851"
    r = ds.read(tiles[0], *full())
    ids = {c: i for i, c in enumerate(CLASSES_2021)}
    lab = r.classes
    assert lab[120, 120] == ids["double_plant"] and lab[220, 220] == ids["weed_cluster"]
    assert lab[305, 305] == ids["water"] and lab[350, 350] == ids["background"]
    assert lab[170, 170] == 255  # double_plant and weed_cluster overlap: either would be right
    assert lab[30, 410] == 255  # storm_damage: not evaluated by the challenge, not background either
    assert lab[300, 10] == 255 and not r.valid[300, 10]  # outside the field boundary
    assert lab[500, 300] == 255 and not r.valid[500, 300]  # invalid pixel (masks == 0)
    assert r.valid[170, 170] and r.valid[350, 350]  # overlaps are still real, poppy-free farmland
    np.testing.assert_allclose(r.image[:, 350, 350], RGB, atol=3)  # R, G, B in file order
    np.testing.assert_allclose(r.image[:, 300, 10], RGB, atol=3)  # outside the field is still imagery
    assert (r.image[:, 500, 300] == 0).all()
    with pytest.raises(InputError, match="the test split has no labels"):
        ds.read(ds.tiles("test")[0], *full())
    assert not ds.read(ds.tiles("test")[0], *full(), classes=False).valid[500, 0]


def test_agriculture_vision_nir_is_the_fourth_band(agri: Path) -> None:
    ds = AgricultureVision(agri, nir=True)
    r = ds.read(ds.tiles("val")[0], Window(300, 300, 50, 50), (50, 50), classes=False)
    assert r.image.shape == (4, 50, 50)
    np.testing.assert_allclose(r.image[:, 25, 25], (*RGB, NIR), atol=3)


def test_agriculture_vision_2020_classes_are_recognised(tmp_path: Path) -> None:
    write_av_tile(tmp_path / "train", "ABC_0-0-512-512", CLASSES_2020)
    ds = AgricultureVision(tmp_path)
    assert ds.version == "2020" and ds.classes == CLASSES_2020
    lab = ds.read(ds.tiles("train")[0], *full()).classes
    assert lab[305, 305] == CLASSES_2020.index("standing_water") and lab[170, 170] == 255


def test_agriculture_vision_found_one_level_down_or_as_one_split(agri: Path) -> None:
    assert set(AgricultureVision(agri.parent).splits()) == {"train", "val", "test"}  # the release folder inside
    only_val = AgricultureVision(agri / "val")
    assert only_val.splits() == {"val": True} and len(only_val.tiles("val")) == 1


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("boundaries", "lack their boundary file"),
        ("labels/water", "lack their water file"),
        ("layout", "not an Agriculture-Vision folder"),
        ("classes", "expected the 2021 classes"),
    ],
)
def test_agriculture_vision_refuses_incomplete_copies(tmp_path: Path, damage: str, match: str) -> None:
    name = "F_0-0-512-512"
    write_av_tile(tmp_path / "train", name, CLASSES_2021)
    if damage == "layout":
        (tmp_path / "train" / "images" / "rgb").rename(tmp_path / "train" / "images" / "colour")
    elif damage == "classes":
        (tmp_path / "train" / "labels" / "water").rename(tmp_path / "train" / "labels" / "lake")
    else:
        (tmp_path / "train" / damage / f"{name}.png").unlink()
    with pytest.raises(InputError, match=match):
        AgricultureVision(tmp_path).tiles("train")


# --- chips at the model's GSD ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec_gsd", "side_px", "water_m2"), [("", 38.4, 1.44), ("@0.2", 19.2, 5.76)])
def test_ten_cm_tile_is_upsampled_to_the_model_gsd_and_keeps_ground_area(
    agri: Path, spec_gsd: str, side_px: float, water_m2: float
) -> None:
    ds = open_public(f"agriculture-vision{spec_gsd}:{agri}")
    chips = PublicChipDataset(ds, ds.tiles("val"), target_gsd_m=0.03, chip_size=128, chips_per_epoch=1)
    window = chips.chip_window(ds.tiles("val")[0], 306.0, 306.0, 0.03)  # centred on the 12 x 12 px water patch
    assert window.width == pytest.approx(side_px) and window.height == pytest.approx(side_px)  # 3.84 m of ground
    image, mask = chips.read_chip(0, window)
    assert image.shape == (3, 128, 128) and mask.shape == (128, 128)
    water = int((mask == CLASSES_2021.index("water")).sum())
    assert water * 0.03**2 == pytest.approx(water_m2, rel=0.05)  # 1.2 m (or 2.4 m at 20 cm) squared
    assert chips.upsampling == pytest.approx(float(spec_gsd[1:] or 0.1) / 0.03)


def test_chips_are_reproducible_and_augmented_chips_keep_the_ignore_value(agri: Path) -> None:
    from datasets.transforms import train_augment

    ds = open_public(f"agriculture-vision:{agri}")
    kw = {"target_gsd_m": 0.05, "chip_size": 48, "chips_per_epoch": 6, "seed": 4, "scale_jitter": 0.2}
    a = PublicChipDataset(ds, ds.tiles("train"), **kw, transform=train_augment())
    b = PublicChipDataset(ds, ds.tiles("train"), **kw, transform=train_augment())
    a.set_epoch(2), b.set_epoch(2)
    for i in range(6):
        ca, cb = a.get_chip(i), b.get_chip(i)
        assert torch.equal(ca.image, cb.image) and torch.equal(ca.mask, cb.mask) and ca.window == cb.window
        assert set(ca.mask.unique().tolist()) <= {*range(len(CLASSES_2021)), 255}
    a.set_epoch(3)
    assert any(a.get_chip(i).window != b.get_chip(i).window for i in range(6))


# --- negatives ------------------------------------------------------------------------------------------------


def test_agriculture_vision_negatives_are_zero_where_valid_and_never_poppy(agri: Path) -> None:
    ds = open_public(f"agriculture-vision:{agri}")
    tiles = ds.negative_tiles()
    assert {t.split for t in tiles} == {"train", "val", "test"}  # negatives need no labels, only the footprint
    chips = PublicChipDataset(ds, tiles, target_gsd_m=0.1, chip_size=512, chips_per_epoch=1, labels="negative")
    _, mask = chips.read_chip(0, Window(0, 0, 512, 512))
    expected = np.zeros((512, 512), np.uint8)
    expected[:, :64] = 255
    expected[448:] = 255
    np.testing.assert_array_equal(mask, expected)  # overlaps and storm damage are negatives too
    drawn = PublicChipDataset(ds, tiles, target_gsd_m=0.03, chip_size=64, chips_per_epoch=20, labels="negative")
    values = set(torch.cat([drawn[i][1].unique() for i in range(20)]).tolist())
    assert values <= {0, 255} and 0 in values


class _PoppyChips(Dataset):
    """Stands in for ChipDataset: every item all poppy (mask 1)."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(3, 32, 32), torch.ones(32, 32, dtype=torch.int64)


def test_negatives_are_mixed_in_at_the_chosen_share(agri: Path) -> None:
    ds = open_public(f"agriculture-vision:{agri}")
    neg = PublicChipDataset(ds, ds.negative_tiles(), target_gsd_m=0.1, chip_size=32, chips_per_epoch=300,
                            labels="negative")  # fmt: skip
    mixed = MixedChipDataset(_PoppyChips(300), neg, share=0.2, seed=1)
    mixed.set_epoch(1)
    flags = [mixed.is_negative(i) for i in range(300)]
    assert 0.14 < np.mean(flags) < 0.26
    for i in [i for i, f in enumerate(flags) if f][:5] + [i for i, f in enumerate(flags) if not f][:5]:
        mask = mixed[i][1]
        assert (1 in mask) != flags[i]  # negatives never 1, poppy chips here always
    mixed.set_epoch(2)
    assert [mixed.is_negative(i) for i in range(300)] != flags
    with pytest.raises(InputError, match=r"--negative-share 1\.0"):
        MixedChipDataset(_PoppyChips(10), neg, share=1.0)


# --- LoveDA ---------------------------------------------------------------------------------------------------


def write_loveda(root: Path, split: str, domain: str, name: str, masks: bool = True) -> None:
    d = root / split / domain
    image = np.empty((1024, 1024, 3), np.uint8)
    image[:] = RGB
    image[:100] = 0  # no-data strip
    write_image(d / "images_png" / f"{name}.png", image)
    if masks:
        m = np.ones((1024, 1024), np.uint8)  # 1 background
        m[:100] = 0  # 0 no-data
        m[100:400] = 7  # agriculture
        m[400:600, :512] = 2  # building
        m[700:710, 700:710] = 9  # a value the publishers never use
        write_image(d / "masks_png" / f"{name}.png", m)


@pytest.fixture(scope="module")
def loveda(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loveda") / "LoveDA"
    write_loveda(root, "Train", "Rural", "1366")
    write_loveda(root, "Train", "Urban", "0")
    write_loveda(root, "Val", "Rural", "2522")
    write_loveda(root, "Test", "Rural", "4191", masks=False)
    return root


def test_loveda_maps_no_data_to_ignore_and_classes_down_by_one(loveda: Path) -> None:
    ds = open_public(f"loveda:{loveda}")
    assert isinstance(ds, LoveDA) and ds.classes[6] == "agriculture" and ds.gsd_m == 0.3
    assert ds.splits() == {"train": True, "val": True, "test": False}
    assert [t.key for t in ds.tiles("train")] == ["train/Rural/1366", "train/Urban/0"]
    r = ds.read(ds.tiles("train")[0], *full(1024))
    assert r.classes[50, 50] == 255 and not r.valid[50, 50]  # 0 = no-data
    assert r.classes[200, 200] == 6 and r.classes[500, 100] == 1 and r.classes[900, 900] == 0
    assert r.classes[705, 705] == 255  # unknown value: ignored, not guessed
    np.testing.assert_array_equal(r.image[:, 500, 900], RGB)  # PNG is lossless: exact, R G B
    assert [t.split for t in ds.negative_tiles()] == ["train", "train", "val"]  # Test has no masks: no no-data
    neg = PublicChipDataset(ds, ds.negative_tiles(), target_gsd_m=0.3, chip_size=1024, chips_per_epoch=1,
                            labels="negative")  # fmt: skip
    _, mask = neg.read_chip(0, Window(0, 0, 1024, 1024))
    assert (mask[:100] == 255).all() and (mask[100:700] == 0).all() and set(np.unique(mask)) == {0, 255}


def test_loveda_domains_and_one_domain_folder(loveda: Path) -> None:
    rural = open_public(f"loveda-rural:{loveda}")
    assert rural.title == "LoveDA Rural" and [t.key for t in rural.tiles("train")] == ["train/Rural/1366"]
    assert [t.key for t in open_public(f"loveda-urban:{loveda}").tiles("train")] == ["train/Urban/0"]
    one = LoveDA(loveda / "Val" / "Rural")
    assert one.splits() == {"val": True} and len(one.tiles("val")) == 1
    with pytest.raises(InputError, match="not a LoveDA folder"):
        LoveDA(loveda / "Test" / "Rural" / "images_png")


# --- LandCover.ai ---------------------------------------------------------------------------------------------


def write_landcoverai(root: Path, name: str, gsd: float, x0: float) -> None:
    profile = dict(driver="GTiff", height=200, width=200, crs="EPSG:2180", transform=Affine(gsd, 0, x0, 0, -gsd, 5e5))
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    with rasterio.open(root / "images" / f"{name}.tif", "w", count=3, dtype="uint8", **profile) as ds:
        ds.write(np.broadcast_to(np.array(RGB, np.uint8)[:, None, None], (3, 200, 200)))
    mask = np.zeros((200, 200), np.uint8)
    mask[:50], mask[50:100], mask[100:150], mask[150:, :100] = 1, 2, 3, 4
    with rasterio.open(root / "masks" / f"{name}.tif", "w", count=1, dtype="uint8", **profile) as ds:
        ds.write(mask, 1)


def test_landcoverai_reads_gsd_from_each_geotiff_and_holds_out_orthophotos(tmp_path: Path) -> None:
    root = tmp_path / "landcover.ai.v1"
    write_landcoverai(root, "M-33-20-D-c-4-2", 0.25, 4e5)
    write_landcoverai(root, "N-34-61-B-a-1-1", 0.5, 6e5)
    ds = open_public(f"landcoverai:{root}")
    assert isinstance(ds, LandCoverAI) and ds.name == "landcover.ai"
    gsds = [t.gsd_m for t in ds.tiles("train")]
    assert gsds == [pytest.approx(0.25, rel=0.01), pytest.approx(0.5, rel=0.01)]  # geodesic, EPSG:2180
    lab = ds.read(ds.tiles("train")[0], *full(200)).classes
    assert [lab[r, 150] for r in (25, 75, 125, 175)] == [1, 2, 3, 0] and lab[175, 50] == 4
    train, val, rule = pretraining_split(ds, 0.2, seed=0)
    assert len(train) == 1 and len(val) == 1 and "held out 1 of 2" in rule


# --- synthetic land cover -------------------------------------------------------------------------------------


def write_synthetic(folder: Path, name: str, x0: float = 500000.0) -> None:
    """NAME.tif (RGBA, alpha footprint) + NAME.landcover.tif + NAME.json as datasets.synthetic writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", height=64, width=64, dtype="uint8", crs="EPSG:32650",
                   transform=Affine(0.03, 0, x0, 0, -0.03, 4e6))  # fmt: skip
    rgba = np.zeros((4, 64, 64), np.uint8)
    rgba[:3] = np.array(RGB, np.uint8)[:, None, None]
    rgba[3, :, 8:] = 255  # footprint: all but the first 8 columns
    with rasterio.open(folder / f"{name}.tif", "w", count=4, **profile) as ds:
        ds.write(rgba)
    lc = np.full((64, 64), 2, np.uint8)  # wheat
    lc[:, :8] = 0
    lc[20:30, 20:30] = 12  # poppy
    with rasterio.open(folder / f"{name}.landcover.tif", "w", count=1, nodata=0, **profile) as ds:
        ds.write(lc, 1)
    legend = {str(k): v for k, v in LANDCOVER.items()}
    (folder / f"{name}.json").write_text(json.dumps({"gsd_m": 0.03, "landcover_legend": legend}))


def test_synthetic_landcover_classes_and_poppy_never_negative(tmp_path: Path) -> None:
    write_synthetic(tmp_path, "s0")
    write_synthetic(tmp_path, "s1", x0=500100.0)
    (tmp_path / "no_lc.tif").write_bytes((tmp_path / "s0.tif").read_bytes())  # a scene without land cover: skipped
    ds = open_public(f"synthetic-landcover:{tmp_path}")
    assert isinstance(ds, SyntheticLandcover) and len(ds.classes) == len(LANDCOVER) - 1
    assert ds.classes[ds.poppy_class] == "poppy"
    assert [t.group for t in ds.tiles("train")] == ["s0", "s1"]
    r = ds.read(ds.tiles("train")[0], *full(64))
    assert r.classes[25, 25] == ds.poppy_class and r.classes[40, 40] == ds.classes.index("wheat")
    assert r.classes[40, 2] == 255 and not r.valid[40, 2]
    neg = PublicChipDataset(ds, ds.tiles("train"), target_gsd_m=0.03, chip_size=64, chips_per_epoch=1,
                            labels="negative")  # fmt: skip
    _, mask = neg.read_chip(0, Window(0, 0, 64, 64))
    assert (mask[20:30, 20:30] == 255).all() and (mask[:, :8] == 255).all() and mask[40, 40] == 0
    assert int((mask == 0).sum()) == 64 * 56 - 100


# --- specs and splits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("/data/LoveDA", "give NAME:PATH"),
        ("imagenet:/data", "unknown data set 'imagenet'; choose one of: agriculture-vision"),
        ("loveda@fine:/data", "'fine' is not metres per pixel"),
        ("loveda:{tmp}/missing", "no such folder"),
        ("loveda@20:{tmp}", "must be in metres per pixel"),
        ("agriculture-vision:{tmp}", "not an Agriculture-Vision folder"),
        ("landcover.ai:{tmp}", "not a LandCover.ai folder"),
        ("synthetic-landcover:{tmp}", "--landcover"),
    ],
)
def test_bad_specs_say_what_to_give(tmp_path: Path, spec: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        open_public(spec.replace("{tmp}", str(tmp_path)), "--pretrain")


def test_spec_parsing_keeps_windows_paths_and_normalises() -> None:
    assert parse_spec("LoveDA-Rural@0.3:D:\\data\\LoveDA") == ("loveda-rural", 0.3, "D:\\data\\LoveDA")
    assert parse_spec("agrivision:/x") == ("agriculture-vision", None, "/x")
    assert normalise_spec("landcoverai@0.25:/data/../lc") == "landcover.ai@0.25:/lc"


def test_pretraining_split_uses_the_published_val_split_else_holds_out_whole_fields(agri: Path, tmp_path: Path) -> None:
    train, val, rule = pretraining_split(open_public(f"agriculture-vision:{agri}"), 0.2, seed=0)
    assert len(train) == 3 and [t.split for t in val] == ["val"] and "own val split" in rule
    for name in ["F1_0-0-512-512", "F1_512-0-1024-512", "F2_0-0-512-512", "F3_0-0-512-512"]:
        write_av_tile(tmp_path / "train", name, CLASSES_2021)
    for seed in range(4):
        train, val, _ = pretraining_split(AgricultureVision(tmp_path), 0.3, seed)
        assert {t.group for t in train}.isdisjoint({t.group for t in val}) and len(train) + len(val) == 4


# --- per-class IoU --------------------------------------------------------------------------------------------


def test_per_class_iou_on_a_hand_made_case() -> None:
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 3]])  # the last pixel is ignored whatever it predicts
    conf = confusion_matrix(target, pred, 4)
    np.testing.assert_array_equal(conf, [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    iou = class_iou(conf)
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 0.0])
    assert math.isnan(iou[3])  # neither present nor predicted: no IoU
    report = ClassReport(("a", "b", "c", "d"), conf)
    assert report.miou == pytest.approx(1 / 3) and report.pixel_accuracy == pytest.approx(3 / 5)
    d = report.to_dict()
    assert d["classes"][3] == {"class": "d", "iou": None, "pixels": 0} and d["classes"][1]["pixels"] == 2
    assert "mean IoU" in report.table() and report.score == (pytest.approx(1 / 3),)
    with pytest.raises(ValueError, match=r"class ids must be in 0\.\.3"):
        confusion_matrix(np.array([4]), np.array([0]), 4)


# --- weight transfer ------------------------------------------------------------------------------------------


def test_load_pretrained_into_copies_matching_tensors_and_reinitialises_the_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    arch = {"base_channels": 4, "depth": 2}
    pre = build_model("fastunet", num_classes=7, **arch)
    classes = ("background", "building", "road", "water", "barren", "forest", "agriculture")
    save_checkpoint(tmp_path / "pre.pt", pre, ModelSpec(arch="fastunet", arch_args=arch, classes=classes))
    poppy = build_model("fastunet", num_classes=1, **arch)
    head = poppy.state_dict()["net.head.weight"].clone()
    report = load_pretrained_into(poppy, tmp_path / "pre.pt")
    after, before = poppy.state_dict(), pre.state_dict()
    assert torch.equal(after["net.inc.0.0.weight"], before["net.inc.0.0.weight"])  # the encoder's first conv
    assert torch.equal(after["net.down.1.1.1.running_mean"], before["net.down.1.1.1.running_mean"])
    assert torch.equal(after["net.head.weight"], head)  # 7 -> 1 classes: left as initialised
    assert [r[0] for r in report.reshaped] == ["net.head.weight", "net.head.bias"]
    assert len(report.copied) == len(after) - 2 and not report.missing and not report.unexpected
    assert report.summary().startswith(f"transferred {len(after) - 2} of {len(after)} tensors")
    with pytest.raises(InputError, match="not every tensor transfers"):
        load_pretrained_into(poppy, tmp_path / "pre.pt", strict=True)
    with pytest.raises(InputError, match="no tensor matches"):
        load_pretrained_into(build_model("fastunet", num_classes=1, base_channels=8, depth=2), pre)
