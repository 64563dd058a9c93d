"""Tests for domain randomisation in the scene generator (datasets/scene/randomise.py) and ``--crs`` parsing."""

from __future__ import annotations

import colorsys
import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import CRS, Geod, Transformer

from core.errors import InputError
from core.files import file_sha256
from datasets import synthetic
from datasets.scene import randomise as rz
from datasets.scene.context import Box
from datasets.scene.items import LANDCOVER, LC, RANDOMISED_CLASSES
from datasets.scene.materials.poppy import POPPY_PALETTES
from datasets.scene.randomise import FACTORS, FAMILIES, SceneOptions, factor_values, family_of
from datasets.scene.render import render_window

# --- level 0 is today's renderer, byte for byte ------------------------------------------------------------

# One small scene per plot setting (and one without poppy), each in another CRS and band layout. The SHA-256
# values were computed with the renderer before randomisation was added (commit ea75193) by rendering these
# exact cases; any change to the level-0 pixels, labels, land cover or sidecar breaks them.
LEVEL0_CASES = {
    "field": dict(seed=0, crs="utm"),
    "bed": dict(seed=3, crs="cgcs2000", landcover=True),
    "interplanted": dict(seed=5, crs="4326", rgb=True),
    "courtyard": dict(seed=10, crs="3857", landcover=True),
    "edge": dict(seed=85, crs="utm"),
    "no_poppy": dict(seed=14, crs="utm", stage="none"),
}
LEVEL0_SHA256 = {
    "field": {
        "image": "4ca81cbfd95e5791f7454251b4450868020e450793ab059c40691c4552fae522",
        "labels": "2767e3d9aaf5d1718051a326a10bf74bd59d43b0e504a94186008ca4808b0450",
        "sidecar": "82d99f9beb37da03765574a554b689c44249b8184931be8f66ff392fd607d015",
    },
    "bed": {
        "image": "50680de8c245769f87bb7ed592fd135dbaf135c5597336337b8e10e5584808b1",
        "labels": "11581a1ee9d7e33bdab5cc0fa9493cc8f0c9b4a691e4b992df587534715a983c",
        "sidecar": "1c662b969dee915dc25cc17c40644f237cd2046d29fd3786b8f93ff5d08324c9",
        "landcover": "1ac198974843ae40ebc5889d873b77457d70ce8a77cbb215b47467a1fb0cb53c",
    },
    "interplanted": {
        "image": "6796f36298ade60cd20b55b08c6fcf8b625adb3aff36610456da04999b94f159",
        "labels": "a7414fd3a2cf50812a3d94000b3f0efcac11cd7abe335759ed25a90797eac9e1",
        "sidecar": "329bef6422b68c548a2aff38ea6b6913a2db1df8ef6988d1450e79f4cc0f7612",
    },
    "courtyard": {
        "image": "553510badcf27047c8c6d1ed682f4b3e55ca315de6376612c44137057ca07c59",
        "labels": "d3f066aa1336d910f5215d07e466bb0a7a926e7eb5db3df82d2c11efa0d84f7c",
        "sidecar": "8cd4e15fd18db532021fe2d3a6bed413f5ed9c3be806be4e64c504b4d367b636",
        "landcover": "e9c7b8caf3236e86346c6c56ffc6c4c76eacffc787f941a167cd6b0ee40b2d52",
    },
    "edge": {
        "image": "565b98e70128831c8bac03a4ff3ee2615b8a988c9c98238bc2811f73b297321c",
        "labels": "d3823502768d73e2d213008fb1bfcc0a1118c8f7dea68f89a62c119eb0705a3f",
        "sidecar": "6a856acb41493ff1ade40aa1f70216fe92ec6670021a8bb06caeea5948fdd294",
    },
    "no_poppy": {
        "image": "a94bd6052817a6a4e16beeb110b52250ecd3aef9393c8d5a921fdc42f28fc6c3",
        "labels": "7d09e532fc380630caac6b4b1b5174a7a9f7a308f6544bcb79eefb97b1e12306",
        "sidecar": "dacb14c5c85b8e8fbb95c913f4a07209067cbe0417934ab84e8e8d88c05ee2ed",
    },
}


def _render(out, name: str, options=None, **kw):
    args = dict(size=256, gsd_m=0.03, stage="mixed", poppy_prob=1.0, window=128)
    args.update(kw)
    return synthetic.render_scene(out, name, options=options, **args)


@pytest.mark.parametrize("name", list(LEVEL0_CASES))
def test_level0_is_byte_identical_to_todays_renderer(tmp_path, name):
    res = _render(tmp_path, name, SceneOptions(randomise=0), **LEVEL0_CASES[name])
    got = {k: file_sha256(res[k]) for k in ("image", "labels", "sidecar", "landcover") if res[k]}
    assert got == LEVEL0_SHA256[name]


def test_level0_cases_cover_every_plot_setting(tmp_path):
    settings = set()
    for name, case in LEVEL0_CASES.items():
        scene, _ = synthetic.build_scene(case["seed"], 256, 0.03, case.get("stage", "mixed"), 1.0)
        settings |= {p.setting for p in scene.layout.plots}
        assert (name in settings) or name == "no_poppy"
    assert settings == {"field", "bed", "interplanted", "courtyard", "edge"}


# --- randomised scenes ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def levels(tmp_path_factory):
    """The same seed at levels 0, 1 and 2 (and the held-out half at level 1)."""
    out = tmp_path_factory.mktemp("levels")
    runs = {
        "l0": None,
        "l1": SceneOptions(1, "train"),
        "l2": SceneOptions(2, "train"),
        "h1": SceneOptions(1, "holdout"),
    }
    return {k: _render(out, k, o, seed=5, crs="utm", landcover=True) for k, o in runs.items()}


def _pixels(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_randomised_scene_keeps_geometry_and_labels_but_not_looks(levels):
    labels = {k: json.loads(Path(r["labels"]).read_text()) for k, r in levels.items()}
    assert labels["l0"]["features"], "the seed must give poppy plots"
    for k in ("l1", "l2", "h1"):
        assert labels[k] == labels["l0"], k
        diff = np.abs(_pixels(levels[k]["image"]).astype(int) - _pixels(levels["l0"]["image"]).astype(int))
        assert diff[:3].mean() > 5, k  # every surface and the camera changed
        assert levels[k]["meta"]["options"]["randomise"] == int(k[1])
    assert "options" not in levels["l0"]["meta"]


@pytest.mark.parametrize("level", [1, 2])
def test_randomised_render_does_not_depend_on_window(tmp_path, level):
    # Ghosting, motion blur, halos and vignetting are neighbourhood or global-coordinate operations inside
    # the window margin: any window size must give the same pixels.
    a = _render(tmp_path, "a", SceneOptions(level), seed=18, window=64)
    b = _render(tmp_path, "b", SceneOptions(level), seed=18, window=256)
    look = a["meta"]["look"]  # the seed turns every camera effect on
    assert look["ghost"] > 0 and look["motion_px"] > 1 and look["halo"] > 0 and look["vignette"] > 0.1
    assert np.array_equal(_pixels(a["image"]), _pixels(b["image"]))


def test_same_seed_and_options_give_identical_files(tmp_path):
    a = _render(tmp_path / "a", "s", SceneOptions(2, "holdout"), seed=21)
    b = _render(tmp_path / "b", "s", SceneOptions(2, "holdout"), seed=21)
    for key in ("image", "labels", "sidecar"):
        assert file_sha256(a[key]) == file_sha256(b[key]), key


# --- physical and botanical bounds --------------------------------------------------------------------------


def _scene(seed: int, options: SceneOptions, size: int = 640):
    return synthetic.build_scene(seed, size, 0.03, "mixed", 1.0, options)[0]


def _colours(params: dict):
    for key in ("colour", "green", "film", "inside", "asphalt", "concrete", "brick", "soil"):
        v = params.get(key)
        if isinstance(v, list | tuple) and len(v) == 3 and not isinstance(v[0], str):
            yield key, v


@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("seed", [1, 2, 6])
def test_every_level_stays_within_physical_and_botanical_bounds(level, seed):
    base = _scene(seed, SceneOptions())
    scene = _scene(seed, SceneOptions(level))
    assert [it.geom.wkb for it in scene.layout.items] == [it.geom.wkb for it in base.layout.items]
    for old, it in zip(base.layout.items, scene.layout.items, strict=True):
        if it.material == "poppy":
            # Poppy: only the flower mix may change, and only to a botanical one (white, red, pink, mauve).
            changed = {k for k in it.params if it.params[k] != old.params[k]}
            assert changed <= {"palette", "soil"}, changed
            assert it.params["palette"] in POPPY_PALETTES
            r, g, b = it.params["foliage"]
            assert g >= r and b >= r * 0.8, "poppy foliage must stay glaucous grey/blue-green"
            continue
        for key, c in _colours(it.params):
            # sRGB 20-240: no paint, plastic, soil or leaf is blacker or whiter than that from the air.
            assert all(15 <= x <= 245 for x in c), (it.material, key, c)
    s = scene.season
    assert 50 <= s.jpeg_quality <= 95 and 0.0 <= s.seam_gain <= 0.14 and 0.3 <= s.blur_px <= 1.8
    assert 0.7 <= s.saturation <= 1.3 and abs(s.wb_temp) < 5 and 0.004 <= s.noise <= 0.03
    look = scene.look
    assert look.level == level and look.response in rz.RESPONSES
    assert 0 <= look.vignette <= 0.35 and 0 <= look.ghost <= 0.5 and 0 <= look.motion_px <= 6
    assert max(abs(v) for v in look.ghost_shift) <= 5  # inside the window margin


def test_randomised_pixels_are_not_clipped(levels):
    for k in ("l1", "l2", "h1"):
        px = _pixels(levels[k]["image"])
        valid = px[3] > 0
        rgb = px[:3][:, valid]
        clipped = ((rgb == 0) | (rgb == 255)).any(axis=0).mean()
        assert clipped < 0.02, (k, clipped)
        with rasterio.open(levels[k]["landcover"]) as ds:
            assert set(np.unique(ds.read(1)).tolist()) <= set(LANDCOVER)
        assert set(levels[k]["meta"]["landcover_legend"]) == {str(c) for c in LANDCOVER}
    assert not set(levels["l0"]["meta"]["landcover_legend"]) & {str(c) for c in RANDOMISED_CLASSES}


# --- the appearance halves ------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", list(FACTORS))
def test_appearance_halves_are_disjoint(factor):
    train, holdout = FACTORS[factor]
    assert train and holdout
    assert not set(train) & set(holdout), f"{factor}: {set(train) & set(holdout)} in both halves"
    assert len(set(train)) == len(train) and len(set(holdout)) == len(holdout)


@pytest.mark.parametrize("factor", [f for f in FACTORS if f.endswith("_family")])
def test_colour_family_boxes_do_not_overlap_across_halves(factor):
    # Colours on a fine HSV grid: none may belong to a family of each half.
    train, holdout = FACTORS[factor]

    def inside(name, h, s, v):
        (h0, h1), (s0, s1), (v0, v1) = FAMILIES[name]
        hh = h + 360.0 if h < h0 else h
        return h0 <= hh < h1 and s0 <= s <= s1 and v0 <= v <= v1

    for h in np.arange(0, 360, 2.5):
        for s in np.linspace(0, 1, 41):
            for v in np.linspace(0, 1, 41):
                a = any(inside(n, h, s, v) for n in train)
                b = any(inside(n, h, s, v) for n in holdout)
                assert not (a and b), (factor, h, s, v)


@pytest.mark.parametrize("factor", [f for f in FACTORS if f.endswith("_family")])
@pytest.mark.parametrize("half", ["train", "holdout"])
def test_family_colours_fall_in_their_half(factor, half):
    d = rz._Draw(np.random.default_rng(0), SceneOptions(2, half))
    for _ in range(300):
        c = d.family_colour(factor)
        assert family_of(c, factor) in factor_values(factor, half), c


def _drawn_names(scene) -> dict[str, set]:
    got: dict[str, set] = {
        "roof": set(),
        "tarp": set(),
        "flower_mix": set(),
        "look_alike_flowers": set(),
        "mulch_film": set(),
    }
    for it in scene.layout.items:
        p = it.params
        if it.material == "roof":
            got["roof"].add(p["kind"])
        elif it.material == "tarp":
            got["tarp"].add(p["colour_name"])
        elif it.material == "poppy":
            got["flower_mix"].add(p["palette"])
        elif it.material == "flowers":
            got["look_alike_flowers"].add(p["kind"])
        elif it.material == "plastic_mulch":
            got["mulch_film"].add(p["film"])
    got["camera_response"] = {scene.look.response}
    return got


@pytest.mark.parametrize("half", ["train", "holdout"])
def test_scenes_draw_only_from_their_half(half):
    seen: dict[str, set] = {}
    for seed in (1, 2, 3, 4, 6):
        for level in (1, 2):
            for factor, names in _drawn_names(_scene(seed, SceneOptions(level, half), size=900)).items():
                assert names <= set(factor_values(factor, half)), (seed, level, factor, names)
                seen.setdefault(factor, set()).update(names)
    # The check saw real draws, not empty scenes.
    assert seen["roof"] and seen["flower_mix"] and seen["camera_response"]


def test_held_out_roof_colours_stay_out_of_training_scenes():
    # Level 2 may paint a roof any colour of its half's families: a roof in a train scene is never in a
    # held-out family, unless it is a jittered train swatch (the level-1 path).
    swatches = {kind: np.array(rz._ROOF[kind][1], float) for kind in factor_values("roof", "train")}
    for seed in (1, 2, 3):
        for it in _scene(seed, SceneOptions(2, "train"), size=900).layout.items:
            if it.material != "roof":
                continue
            fam = family_of(it.params["colour"], "paint_family")
            near_swatch = np.all(np.abs(np.log(np.array(it.params["colour"]) / swatches[it.params["kind"]])) < 0.3)
            assert near_swatch or fam in factor_values("paint_family", "train"), it.params


# --- plot areas and whole fields -------------------------------------------------------------------------------


def test_whole_field_plots_reach_2000_m2_and_hold_full_poppy_chips():
    opts = SceneOptions(plot_area=(200.0, 2000.0))
    scene = None
    for seed in range(20):
        scene, _ = synthetic.build_scene(seed, 2048, 0.05, "flowering", 1.0, opts)
        if any(p.geom.area > 500 for p in scene.layout.plots):
            break
    areas = [p.geom.area for p in scene.layout.plots]
    assert max(areas) > 500 and all(200.0 <= a <= 2000.0 * 1.5 for a in areas), areas
    # A 64 x 64 px chip (3.2 m) wholly inside the largest plot is all poppy in the land cover.
    plot = max(scene.layout.plots, key=lambda p: p.geom.area)
    inner = plot.geom.buffer(-2.4)
    c = inner.representative_point()
    r0, c0 = (int(c.y / 0.05) // 16) * 16, (int(c.x / 0.05) // 16) * 16
    chip = shapely.box(c0 * 0.05, r0 * 0.05, (c0 + 64) * 0.05, (r0 + 64) * 0.05)
    assert plot.geom.contains(chip)
    _, lc = render_window(scene, Box(r0, c0, 64, 64))
    assert (lc == LC["poppy"]).mean() > 0.97


def test_default_plot_area_keeps_old_range():
    for seed in range(6):
        scene, _ = synthetic.build_scene(seed, 1024, 0.03, "mixed", 1.0)
        assert all(1.5 <= p.geom.area <= 200.0 * 1.01 for p in scene.layout.plots)
        assert all(p.setting != "whole_field" for p in scene.layout.plots)


# --- options and the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"randomise": 3}, "--randomise 3"),
        ({"appearance": "test"}, "--appearance 'test'"),
        ({"appearance": "holdout"}, "needs --randomise 1 or 2"),
        ({"plot_area": (300.0, 200.0)}, "--plot-area 300,200"),
        ({"plot_area": (1.5, 9000.0)}, "--plot-area"),
        ({"plot_area": "big"}, "--plot-area"),
    ],
)
def test_bad_options_raise_input_error(tmp_path, options, match):
    with pytest.raises(InputError, match=match):
        synthetic.render_scene(tmp_path, "x", 1, size=64, gsd_m=0.03, stage="none", options=options)


def test_cli_randomised_holdout_whole_fields(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--size", "128", "--gsd", "0.05", "--seed", "2", "--randomise", "2"]
    argv += ["--appearance", "holdout", "--plot-area", "1.5,2000", "--crs", "EPSG:32650"]
    assert synthetic.main(argv) == 0
    meta = json.loads((tmp_path / "synthetic_0000.json").read_text())
    assert meta["options"] == {"randomise": 2, "appearance": "holdout", "plot_area_m2": [1.5, 2000.0]}
    assert meta["look"]["appearance"] == "holdout" and meta["crs"]["epsg"] == 32650
    assert "synthetic_0000.tif" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--appearance", "train"], "--appearance train needs --randomise"),
        (["--plot-area", "lots"], "--plot-area 'lots'"),
        (["--crs", "EPSG:99999999"], "--crs 'EPSG:99999999'"),
    ],
)
def test_cli_bad_flags_print_one_line(tmp_path, capsys, argv, match):
    assert synthetic.main(["--out", str(tmp_path), "--size", "64", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and match in err


# --- --crs ---------------------------------------------------------------------------------------------------

_UTM50_WKT = CRS.from_epsg(32650).to_wkt()


@pytest.mark.parametrize(
    ("text", "epsg"),
    [
        # the short names: placed by the scene's location, parse_crs leaves them to pick_crs
        ("utm", None),
        ("cgcs2000", None),
        ("4326", None),
        ("3857", None),
        # what GIS users type
        ("EPSG:32650", 32650),
        ("epsg:32650", 32650),
        ("32651", 32651),
        ("EPSG:4547", 4547),  # CGCS2000 / 3-degree Gauss-Kruger CM 114E
        ("EPSG:4490", 4490),  # CGCS2000 geographic
        ("EPSG:3857", 3857),
        (_UTM50_WKT, 32650),
        ("+proj=utm +zone=49 +datum=WGS84 +units=m +no_defs", "projected"),
    ],
)
def test_parse_crs_table(text, epsg):
    crs = synthetic.parse_crs(text)
    if epsg is None:
        assert crs is None
    elif epsg == "projected":
        assert crs.is_projected and crs.utm_zone == "49N"
    else:
        assert crs.to_epsg() == epsg


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("gk", "is not a CRS pyproj knows"),
        ("EPSG:99999999", "is not a CRS pyproj knows"),
        ("+proj=nonsense", "is not a CRS pyproj knows"),
        ("EPSG:5773", "give a projected or geographic 2D CRS"),  # EGM96 height: vertical
        ("EPSG:4978", "give a projected or geographic 2D CRS"),  # WGS 84 geocentric
    ],
)
def test_parse_crs_refuses(text, match):
    with pytest.raises(InputError, match=match):
        synthetic.parse_crs(text)


@pytest.mark.parametrize(("text", "lon_range"), [("EPSG:32650", (114, 120)), ("EPSG:4547", (112.5, 115.5))])
def test_user_crs_places_the_scene_in_its_area_of_use(tmp_path, text, lon_range):
    gsd = 0.03
    res = synthetic.render_scene(tmp_path, "c", 9, size=128, gsd_m=gsd, stage="none", crs=text, window=128)
    with rasterio.open(res["image"]) as ds:
        assert ds.crs == CRS.from_user_input(text)
        x, y = ds.transform * (ds.width / 2, ds.height / 2)
        lon, lat = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
        # True ground GSD at the centre, measured geodesically.
        x1, y1 = ds.transform * (ds.width / 2 + 1, ds.height / 2)
        lo1, la1 = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x1, y1)
    assert lon_range[0] <= lon <= lon_range[1] and 22 <= lat <= 42
    assert Geod(ellps="WGS84").inv(lon, lat, lo1, la1)[2] == pytest.approx(gsd, rel=0.01)
    assert res["meta"]["crs"]["kind"] == text


def test_hsv_helper_matches_colorsys():
    # family_of reads hue in degrees; a pure red and a grey land where the boxes say.
    assert family_of((200, 30, 30), "paint_family") == "red"
    assert family_of((128, 128, 128), "paint_family") == "grey_mid"
    h = colorsys.rgb_to_hsv(0.2, 0.5, 0.2)[0]
    assert math.isclose(rz._hsv_of((51, 127.5, 51))[0], h * 360, abs_tol=1e-6)


def test_landcover_pretraining_merges_level0_and_randomised_legends(tmp_path):
    from datasets.public import open_public

    _render(tmp_path, "a", None, seed=3, size=64, landcover=True, stage="none")
    _render(tmp_path, "b", SceneOptions(1), seed=4, size=64, landcover=True, stage="none")
    ds = open_public(f"synthetic-landcover:{tmp_path}")
    assert ds.classes == tuple(LANDCOVER[v] for v in sorted(LANDCOVER) if v)
    meta = json.loads((tmp_path / "a.json").read_text())
    meta["landcover_legend"]["12"] = "not_poppy"
    (tmp_path / "a.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="legends differ"):
        open_public(f"synthetic-landcover:{tmp_path}")


# --- train.py's generated scenes -----------------------------------------------------------------------------


def _train_settings(tmp_path, *flags):
    import train

    return train.resolve_settings(train.parse_args(["--synthetic", "2", "--out", str(tmp_path / "run"), *flags]))


def test_train_synthetic_flags_default_to_todays_renderer(tmp_path):
    from training.trainer import synthetic_options

    s = _train_settings(tmp_path)
    assert synthetic_options(s) is None and synthetic_options(s, "val") is None


def test_train_synthetic_validation_uses_the_other_half(tmp_path):
    from training.trainer import synthetic_options

    s = _train_settings(tmp_path, "--synthetic-randomise", "2", "--synthetic-appearance", "train",
                        "--synthetic-plot-area", "1.5,2000")  # fmt: skip
    assert synthetic_options(s) == SceneOptions(2, "train", (1.5, 2000.0))
    assert synthetic_options(s, "val") == SceneOptions(2, "holdout", (1.5, 2000.0))


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--synthetic-appearance", "holdout"], "--synthetic-appearance holdout needs --synthetic-randomise 1 or 2"),
        (["--synthetic-plot-area", "9,3"], "--synthetic-plot-area 9,3"),
        (["--synthetic-plot-area", "x"], "--synthetic-plot-area 'x'"),
    ],
)
def test_train_refuses_bad_synthetic_flags(tmp_path, flags, match):
    with pytest.raises(InputError, match=match):
        _train_settings(tmp_path, *flags)


def test_train_generates_randomised_scenes_in_their_own_folder(tmp_path):
    from training.trainer import synthetic_scenes

    opts = SceneOptions(1, "holdout")
    scenes = synthetic_scenes(tmp_path, "val", 1, 7, 64, opts)
    folder = tmp_path / "synthetic" / "val-n1-seed7-px64-r1-holdout-area1.5-200"
    assert len(scenes) == 1 and (folder / "complete.json").is_file()
    meta = json.loads((folder / "synthetic_0000.json").read_text())
    assert meta["options"]["appearance"] == "holdout"
    assert synthetic_scenes(tmp_path, "val", 1, 7, 64, None) and (tmp_path / "synthetic" / "val-n1-seed7-px64").is_dir()


_SWATCHES = {
    "roof": rz._ROOF,
    "tarp": rz._TARP,
    "greenhouse_film": rz._GREENHOUSE,
    "soil": rz._SOIL,
    "wheat_variety": rz._WHEAT,
    "cabbage_variety": rz._CABBAGE,
    "lettuce_variety": rz._LETTUCE,
    "ornamental_colour": rz._ORNAMENTAL,
    "flower_mix": POPPY_PALETTES,
    "camera_response": rz.RESPONSES,
}


@pytest.mark.parametrize("factor", list(FACTORS))
def test_every_factor_value_is_drawable(factor):
    names = factor_values(factor, "all")
    if factor in _SWATCHES:
        assert set(names) <= set(_SWATCHES[factor])
    elif factor.endswith("_family"):
        assert set(names) <= set(FAMILIES)
    else:  # mulch films and look-alike flowers are drawn by the materials: render every value below
        assert factor in ("mulch_film", "look_alike_flowers")


def _box_around(geom, gsd: float) -> Box:
    u0, v0, u1, v1 = geom.bounds
    r0, c0 = max(0, int(v0 / gsd) // 16 * 16), max(0, int(u0 / gsd) // 16 * 16)
    return Box(r0, c0, min(160, max(16, int(v1 / gsd) - r0 + 1)), min(160, max(16, int(u1 / gsd) - c0 + 1)))


@pytest.mark.parametrize(
    ("material", "key", "values"),
    [
        ("roof", "kind", list(rz._ROOF)),
        ("flowers", "kind", list(factor_values("look_alike_flowers", "all"))),
        ("plastic_mulch", "film", list(factor_values("mulch_film", "all"))),
    ],
)
def test_every_roof_film_and_flower_kind_renders(material, key, values):
    # The first scene holding such an item inside its footprint; each value is put on it and rendered.
    for seed in range(20):
        scene = _scene(seed, SceneOptions(2), size=640)
        inside = scene.layout.footprint.buffer(-1.0)
        items = [it for it in scene.layout.items if it.material == material and inside.contains(it.geom.centroid)]
        if items:
            break
    item = items[0]
    item.params.pop("texture", None)
    for v in values:
        item.params[key] = v
        if material == "roof":
            item.params.update(style=rz._ROOF[v][0], colour=list(rz._ROOF[v][1]), heater=False)
        rgba, lc = render_window(scene, _box_around(item.geom, scene.gsd))
        assert rgba[..., 3].any() and set(np.unique(lc).tolist()) <= set(LANDCOVER), v
        if material == "roof" and rz._ROOF[v][0] == "solar":
            assert (lc == LC["solar_panel"]).any(), v
        if material == "flowers" and v.startswith("flowering_weeds"):
            assert (lc == LC["flowering_weeds"]).any(), v
