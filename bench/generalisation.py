"""How a model does on imagery it was not rendered from: one table per model, a CSV and a precision-recall figure.

    .venv/bin/python bench/generalisation.py models/weights/poppy_default.pt /tmp/v1.pt --out bench_out/gen
    .venv/bin/python bench/generalisation.py default --quick          # about 3 minutes on 2 cores

Every model is scored along the path ``infer.py`` takes (:func:`detect.predict.predict_raster`, then
:func:`detect.vectorize.vectorize`) and matched with :func:`training.evaluate.evaluate_prob_raster`, the rules
training validates with (a plot is found when true predictions cover 10 % of it; a prediction is true when 10 %
of it lies on labels, without being a blob over the field). The tests (:data:`TESTS`; add one by appending):

(a) ``generated``: scenes of this project's generator, the distribution the model was trained on;
(b) ``holdout``: generator scenes rendered only from the held-out half of its appearance space
    (``SceneOptions(randomise=1, appearance="holdout")``), the same seeds' sizes, stages and GSDs as (a); the row is
    marked *pending* on a generator without it;
(c) ``composites``: real drone frames (the **test** files of ``real-negatives``) at their true GSD with rendered
    poppy plots blended in (:mod:`datasets.composite`);
(d) ``negatives``: the same real test frames untouched, whole, scored as false area per hectare;
(e) ``scale``: generated poppy-free scenes with plots of 1.5-2,000 m2 pasted into fields (whole fields of up to
    2,000 m2, so a chip wholly inside poppy must be called poppy), courtyards, along field edges and
    interplanted at 3-14 plants/m2 among crops, every stage, GSD 1.5-5 cm.

Scenes use fixed seeds that training never uses (``train.py`` derives its synthetic scenes from ``--seed``,
default 0, through :func:`datasets.synthetic.scene_seed`; these use run seeds 911001-911005, see :data:`SEEDS`).
They are built once into ``OUT/scenes/`` and reused by later runs with the same settings (and by every model of a
run), so two models are always compared on identical pixels.

Metrics, at each model's operating point as ``infer.py --sensitivity`` picks it (``balanced``, its default, unless
``--sensitivity`` says otherwise): plot recall and precision, pixel IoU, area error (median of
``|predicted area / label area - 1|`` over found plots, the predicted area being that of the plots touching the
label), and false area per hectare (area of predictions off every label per hectare of valid ground; on the
negatives it is all false). Broken down per test by growth stage and GSD (scene level: every scene holds one
stage), and by plot size and context (plot level: recall and area error; precision has no plot size). A
precision-recall curve per test over thresholds 0.1-0.9 (false area per hectare against threshold for the
negatives). Outputs in ``--out``: ``table_<model>.txt``, ``generalisation.csv`` (every row of every table),
``pr_curves.csv`` and ``pr_curves.png``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import inspect
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import PoppyError
from datasets import composite, synthetic
from datasets.labelled import LabelledScene as Scene
from datasets.labels import read_labels
from datasets.public.real_negatives import RealNegatives
from datasets.scene.season import STAGES
from detect.vectorize import VectorParams, vectorize
from training.evaluate import evaluate_plots, evaluate_prob_raster, judged_plots
from training.report import PlotCounts, gsd_bin

# A two-stage model's second stage as scored here: (first-stage threshold, judge network, judge spec).
Judge = tuple[float, Any, Any]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NEGATIVES = REPO.parent / "shared/data/real/negatives"
PR_THRESHOLDS = tuple(round(0.1 * i, 2) for i in range(1, 10))  # 0.1 ... 0.9: enough points for a curve
SEEDS = {"generated": 911001, "holdout": 911002, "composites": 911003, "scale": 911005}
SIZE_BINS_M2 = ((5.0, "1.5-5 m2"), (20.0, "5-20 m2"), (100.0, "20-100 m2"), (500.0, "100-500 m2"),
                (math.inf, "500-2000 m2"))  # fmt: skip
GEN_GSDS = (0.015, 0.025, 0.035, 0.05, 0.02, 0.03, 0.045, 0.04)  # cycled over scenes: the police flights' range
FIELD_M2 = (250.0, 300.0, 1200.0, 2000.0, 150.0, 1600.0, 400.0, 900.0)  # (e): the big plot of each scene, cycled
HOLDOUT_LEVEL = 1  # (b): SceneOptions(randomise=1, appearance="holdout")
MAX_GSD_RATIO = 3.0  # as infer.py: real files more than 3x coarser than the model are not scored


@dataclass(frozen=True)
class Config:
    """Sizes of the test sets: ``default`` (both models: 33 min wall on the shared 2 cores, 11 min CPU) or ``quick``."""

    generated: int = 8
    generated_size: int = 1536
    composites_per_file: int = 2
    composites_size: int = 1536
    negatives_size: int = 0  # 0: whole frames
    scale: int = 8
    scale_size: int = 2048

    @classmethod
    def quick(cls) -> Config:
        return cls(generated=3, generated_size=768, composites_per_file=1, composites_size=1024,
                   negatives_size=1536, scale=3, scale_size=1024)  # fmt: skip


# --- outcomes and tables (pure: no model, no files) -------------------------------------------------------------


@dataclass(frozen=True)
class LabelOutcome:
    """One label plot at the model's threshold."""

    stage: str
    context: str
    area_m2: float
    found: bool
    area_error: float | None  # predicted / label area - 1, for found plots


@dataclass
class SceneOutcome:
    """One scene of one test: counts per threshold and the label outcomes at the model's threshold."""

    test: str
    name: str
    stage: str
    gsd_m: float
    thresholds: tuple[float, ...]
    counts: list[PlotCounts]
    threshold: float
    labels: list[LabelOutcome]

    @property
    def at_threshold(self) -> PlotCounts:
        return self.counts[self.thresholds.index(self.threshold)]


def size_bin(area_m2: float) -> str:
    """Name of the plot-size bin of an area in square metres (see ``SIZE_BINS_M2``)."""
    for upper, name in SIZE_BINS_M2:
        if area_m2 < upper:
            return name
    return SIZE_BINS_M2[-1][1]


def _median_abs(errors: Iterable[float | None]) -> float:
    vals = [abs(e) for e in errors if e is not None]
    return float(np.median(vals)) if vals else math.nan


def _scene_row(test: str, by: str, value: str, scenes: Sequence[SceneOutcome]) -> dict:
    total = sum((s.at_threshold for s in scenes), PlotCounts())
    m = total.metrics()
    return {
        "test": test, "by": by, "value": value, "scenes": len(scenes), "labels": total.labels,
        "recall": m["plot_recall"], "precision": m["plot_precision"], "iou": m["pixel_iou"],
        "area_error": _median_abs(lab.area_error for s in scenes for lab in s.labels),
        "fp_m2_per_ha": m["fp_m2_per_ha"], "valid_ha": m["valid_ha"],
    }  # fmt: skip


def _label_row(test: str, by: str, value: str, labels: Sequence[LabelOutcome]) -> dict:
    found = sum(lab.found for lab in labels)
    return {
        "test": test, "by": by, "value": value, "scenes": math.nan, "labels": len(labels),
        "recall": found / len(labels) if labels else math.nan, "precision": math.nan, "iou": math.nan,
        "area_error": _median_abs(lab.area_error for lab in labels), "fp_m2_per_ha": math.nan, "valid_ha": math.nan,
    }  # fmt: skip


def table_rows(outcomes: Sequence[SceneOutcome], tests: Sequence[str]) -> list[dict]:
    """Rows of one model's table: per test, then per test by stage, GSD, plot size and context.

    Stage and GSD rows pool scenes (every scene holds one stage); size and context rows pool label plots
    (recall and area error only). Groups with no scene (or no plot) are left out.
    """
    rows = []
    for test in tests:
        scenes = [s for s in outcomes if s.test == test]
        if not scenes:
            continue
        rows.append(_scene_row(test, "all", "all", scenes))
        for stage in sorted({s.stage for s in scenes}, key=_stage_order):
            rows.append(_scene_row(test, "stage", stage, [s for s in scenes if s.stage == stage]))
        for gbin in sorted({gsd_bin(s.gsd_m) for s in scenes}):
            rows.append(_scene_row(test, "gsd", gbin, [s for s in scenes if gsd_bin(s.gsd_m) == gbin]))
        labels = [lab for s in scenes for lab in s.labels]
        for _, name in SIZE_BINS_M2:
            group = [lab for lab in labels if size_bin(lab.area_m2) == name]
            if group:
                rows.append(_label_row(test, "size", name, group))
        for ctx in sorted({lab.context for lab in labels}):
            rows.append(_label_row(test, "context", ctx, [lab for lab in labels if lab.context == ctx]))
    return rows


def _stage_order(stage: str) -> tuple[int, str]:
    order = {s: i for i, s in enumerate(STAGES)}
    return order.get(stage, len(order)), stage


def pr_points(outcomes: Sequence[SceneOutcome], test: str) -> list[dict]:
    """Pooled precision, recall and false area per hectare at every threshold of one test."""
    scenes = [s for s in outcomes if s.test == test]
    if not scenes:
        return []
    out = []
    for k, t in enumerate(scenes[0].thresholds):
        m = sum((s.counts[k] for s in scenes), PlotCounts()).metrics()
        out.append({"test": test, "threshold": t, "recall": m["plot_recall"], "precision": m["plot_precision"],
                    "fp_m2_per_ha": m["fp_m2_per_ha"]})  # fmt: skip
    return out


def _fmt(v: float, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v * 100:.0f}%" if pct else f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}"


def format_table(model: str, threshold: float, rows: Sequence[dict], pending: Sequence[tuple[str, str]]) -> str:
    """The table as text: one line per row, tests separated; pending tests listed with their reason."""
    head = f"{'test':<11} {'by':<8} {'value':<14} {'scenes':>6} {'plots':>5} {'recall':>7} {'prec.':>6} " \
           f"{'IoU':>5} {'area err':>8} {'FP m2/ha':>9}"  # fmt: skip
    lines = [f"model {model} at threshold {threshold:.2f}", head, "-" * len(head)]
    last = None
    for r in rows:
        if last is not None and r["test"] != last:
            lines.append("")
        last = r["test"]
        scenes = "" if isinstance(r["scenes"], float) else str(r["scenes"])
        lines.append(
            f"{r['test']:<11} {r['by']:<8} {r['value']:<14} {scenes:>6} {r['labels']:>5} {_fmt(r['recall'], True):>7} "
            f"{_fmt(r['precision'], True):>6} {_fmt(r['iou']):>5} {_fmt(r['area_error'], True):>8} "
            f"{_fmt(r['fp_m2_per_ha']):>9}"
        )
    for test, why in pending:
        lines.append(f"{test:<11} pending: {why}")
    return "\n".join(lines)


# --- scoring one scene -----------------------------------------------------------------------------------------


def label_outcomes(scene: Scene, plots: Sequence, found: Sequence[bool]) -> list[LabelOutcome]:
    """Stage, context, area and area error of each label plot (``found`` in the order of the labels file)."""
    with_props = json.loads(Path(scene.labels).read_text())["features"]
    import rasterio

    with rasterio.open(scene.raster) as ds:
        crs = ds.crs
    labels = read_labels(scene.labels, crs)
    if len(labels) != len(with_props) or len(found) != len(labels):
        raise PoppyError(f"{scene.labels}: labels were dropped or repaired; the breakdown needs them as written")
    import shapely

    tree = shapely.STRtree(list(plots)) if plots else None
    out = []
    for i, (geom, feat) in enumerate(zip(labels.geometries, with_props, strict=True)):
        p = feat["properties"]
        err = None
        if found[i] and tree is not None:
            hit = [plots[int(j)] for j in tree.query(geom, predicate="intersects")]
            if hit:
                err = shapely.union_all(hit).area / geom.area - 1.0
        context = str(p.get("context") or p.get("setting") or "-")
        if context == "real":  # composites: the plot's own setting is what varies
            context = f"real {p.get('setting', '')}".strip()
        out.append(LabelOutcome(str(p.get("stage") or scene.stage), context, float(p["area_m2"]), bool(found[i]), err))
    return out


def score_scene(test: str, scene: Scene, prob_path: Path, threshold: float, judge: Judge | None = None) -> SceneOutcome:
    """Counts at every PR threshold and the model's, and the label outcomes at the model's threshold.

    For a two-stage model (``judge``: its first-stage threshold, network and spec) the thresholds are those of the
    judge's plot score, over the first stage's plots at its own threshold (:func:`training.evaluate.judged_plots`).
    """
    params = VectorParams(min_area_m2=1.0)
    ts = tuple(sorted({*PR_THRESHOLDS, round(threshold, 6)}))
    if judge is None:
        res = evaluate_prob_raster(scene, prob_path, thresholds=ts, params=params)
        k = res.thresholds.index(round(threshold, 6))
        plots = [p.geometry for p in vectorize(prob_path, dataclasses.replace(params, threshold=threshold)).plots]
    else:
        kept, grid = judged_plots(scene, prob_path, judge[0], judge[1], judge[2], thresholds=ts, params=params)
        res = evaluate_plots(scene, kept, grid)
        k = res.thresholds.index(round(threshold, 6))
        plots = kept[res.thresholds[k]]
    labels = label_outcomes(scene, plots, list(res.label_found[k])) if len(res.label_stages) else []
    return SceneOutcome(test, scene.name, scene.stage or "none", res.gsd_m, res.thresholds, res.counts,
                        res.thresholds[k], labels)  # fmt: skip


# --- building the test scenes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestSet:
    """One test: its key, a title, and how to build its scenes (None when it cannot be built yet, with why)."""

    key: str
    title: str
    build: Callable[[Path, Config, Path], list[Path]]
    pending: Callable[[], str | None] = lambda: None


def _generated(folder: Path, cfg: Config, seed: int, **options) -> list[Path]:
    out = []
    for i in range(cfg.generated):
        stage = STAGES[i % len(STAGES)]
        name = f"gen_{i:02d}_{stage}"
        synthetic.render_scene(folder, name, synthetic.scene_seed(seed, i), size=cfg.generated_size,
                               gsd_m=GEN_GSDS[i % len(GEN_GSDS)], stage=stage, poppy_prob=1.0, **options)  # fmt: skip
        out.append(folder / f"{name}.tif")
    return out


def build_generated(folder: Path, cfg: Config, negatives: Path) -> list[Path]:
    """(a) In-distribution generator scenes, one stage each, GSD cycled over 1.5-5 cm."""
    return _generated(folder, cfg, SEEDS["generated"])


def _holdout_options() -> dict | None:
    """The generator's appearance hold-out, if this checkout's generator has one."""
    try:
        from datasets.scene.randomise import SceneOptions
    except ImportError:
        return None
    params = inspect.signature(synthetic.render_scene).parameters
    if "options" not in params:
        return None
    # Level 1 (wider real materials and camera) is the lowest level that splits the appearance space in halves.
    return {"options": SceneOptions(randomise=HOLDOUT_LEVEL, appearance="holdout")}


def build_holdout(folder: Path, cfg: Config, negatives: Path) -> list[Path]:
    """(b) Generator scenes rendered only from the held-out half of the appearance space."""
    options = _holdout_options()
    if options is None:
        return []
    return _generated(folder, cfg, SEEDS["holdout"], **options)


def holdout_pending() -> str | None:
    if _holdout_options() is None:
        return "this generator has no SceneOptions(appearance='holdout') yet; the row fills in once it does"
    return None


def build_composites(folder: Path, cfg: Config, negatives: Path) -> list[Path]:
    """(c) Real test frames with rendered plots blended in."""
    res = composite.real_composites(negatives, folder, seed=SEEDS["composites"],
                                    per_file=cfg.composites_per_file, size_px=cfg.composites_size)  # fmt: skip
    return [Path(r["image"]) for r in res]


def build_negatives(folder: Path, cfg: Config, negatives: Path, model_gsd_m: float = 0.03) -> list[Path]:
    """(d) The real test frames untouched (whole, or a central crop with ``--quick``), empty labels."""
    ds = RealNegatives(negatives)
    out = []
    for name in ds.files:
        tile = ds.tile(name)
        if tile.split != "test" or tile.gsd_m > MAX_GSD_RATIO * model_gsd_m:
            continue
        size = cfg.negatives_size or max(tile.height, tile.width)
        bg = composite.real_background(ds, name, size)
        stem = f"neg_{Path(name).stem}"
        composite.write_composite(folder, stem, bg["image"], bg["valid"], bg["crs"], bg["transform"], bg["gsd"], [],
                                  {"source": name, "window_rowcol_hw": bg["window"]})  # fmt: skip
        out.append(folder / f"{stem}.tif")
    return out


_FIELD_CROPS = ("wheat", "garlic", "corn", "veg_ground", "bare", "rapeseed")


def scale_plots(
    layout, gsd: float, rng: np.random.Generator, stage: str, size_px: int, field_m2: float
) -> list[composite.PlotSpec]:
    """Plots for one (e) scene, in pixels: a whole (or large part of a) field, then twice a courtyard (village
    scenes), a plot in a field, a strip along a field's edge and an interplanted patch.

    The whole field is ``field_m2`` (at most 30 % of the scene); other areas are drawn log-uniform within each
    context's range (courtyard 1.5-40 m2, in field 1.5-300 m2, edge 1.5-60 m2, interplanted 5-300 m2) and limited
    by what the scene and the host offer; plots keep 1 m apart.
    """
    import shapely
    from shapely import affinity
    from shapely.geometry import Point, box

    scene_m = size_px * gsd
    inner = box(2.0, 2.0, scene_m - 2.0, scene_m - 2.0)
    fields = [it.geom.intersection(inner) for it in layout.items if it.material in _FIELD_CROPS and it.layer == 10]
    fields = [f for f in fields if not f.is_empty and f.area > 20]
    yards = [it.geom.intersection(inner) for it in layout.items if it.material == "courtyard"]
    built = shapely.union_all([it.geom for it in layout.items if it.material in ("roof", "wall")] or [Point()])
    yards = [y.difference(built.buffer(0.3)) for y in yards]
    yards = [y for y in yards if not y.is_empty and y.area > 4]
    specs: list[composite.PlotSpec] = []
    taken = shapely.Polygon()

    def area(lo: float, hi: float) -> float:
        return float(math.exp(rng.uniform(math.log(lo), math.log(max(hi, lo * 1.01)))))

    def rect_in(host, target: float):
        host = host.difference(taken.buffer(1.0))
        if host.is_empty:
            return None
        c = host.representative_point()
        for _ in range(20):
            x0, y0, x1, y1 = host.bounds
            p = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
            if host.contains(p):
                c = p
                break
        ratio = rng.uniform(1.0, 2.5)
        hl, hw = math.sqrt(target * ratio) / 2, math.sqrt(target / ratio) / 2
        g = affinity.rotate(box(c.x - hl, c.y - hw, c.x + hl, c.y + hw), rng.uniform(0, 180), origin=c)
        return _largest(g.intersection(host))

    def add(g, setting: str, context: str) -> None:
        nonlocal taken
        if g is None or g.area < 1.5:
            return
        px = affinity.scale(g, 1 / gsd, 1 / gsd, origin=(0, 0))
        specs.append(composite.PlotSpec(px, stage, setting, context, int(rng.integers(2**31))))
        taken = taken.union(g)

    # A large poppy field (``field_m2``, at most 30 % of the scene; north-up) over parcels and the paths between
    # them, so that a chip wholly inside poppy sees poppy and nothing else; houses stay out of it.
    target = min(field_m2, 0.3 * inner.area)
    ratio = rng.uniform(1.0, 1.6)
    hl, hw = math.sqrt(target * ratio) / 2, math.sqrt(target / ratio) / 2
    cx = rng.uniform(2.0 + hl, scene_m - 2.0 - hl) if scene_m - 4.0 > 2 * hl else scene_m / 2
    cy = rng.uniform(2.0 + hw, scene_m - 2.0 - hw) if scene_m - 4.0 > 2 * hw else scene_m / 2
    add(_largest(box(cx - hl, cy - hw, cx + hl, cy + hw).difference(built.buffer(1.0)).intersection(inner)),
        "patch", "whole field")  # fmt: skip
    for _ in range(2):
        if yards:
            y = yards[int(rng.integers(len(yards)))]
            add(rect_in(y, area(1.5, min(40.0, y.area * 0.6))), "patch", "courtyard")
        free = [f.difference(taken.buffer(1.0)) for f in fields]
        free = [f for f in free if f.area > 10]
        if not free:
            break
        f = free[int(rng.integers(len(free)))]
        add(rect_in(f, area(1.5, min(300.0, f.area * 0.5))), "patch", "in field")
        width = rng.uniform(0.6, 2.5)
        f = free[int(rng.integers(len(free)))].difference(taken.buffer(1.0))
        strip = f.difference(f.buffer(-width))
        if not strip.is_empty:
            side = area(1.5, 60.0) / width
            b = strip.boundary.interpolate(rng.uniform(0, strip.boundary.length))
            add(_largest(strip.intersection(box(b.x - side / 2, b.y - side / 2, b.x + side / 2, b.y + side / 2))),
                "patch", "field edge")  # fmt: skip
        f = free[int(rng.integers(len(free)))]
        add(rect_in(f, area(5.0, min(300.0, f.area * 0.5))), "interplanted", "interplanted")
    return specs


def _largest(g):
    if g is None or g.is_empty:
        return None
    if g.geom_type == "Polygon":
        return g
    polys = [p for p in getattr(g, "geoms", []) if p.geom_type == "Polygon"]
    return max(polys, key=lambda p: p.area) if polys else None


def build_scale(folder: Path, cfg: Config, negatives: Path) -> list[Path]:
    """(e) Poppy-free generator scenes with plots of every size, context and stage pasted in."""
    import rasterio

    out = []
    for i in range(cfg.scale):
        stage = STAGES[i % len(STAGES)]
        gsd = GEN_GSDS[i % len(GEN_GSDS)]
        seed = synthetic.scene_seed(SEEDS["scale"], i)
        bg_name = f"_bg_{i:02d}"
        synthetic.render_scene(folder, bg_name, seed, size=cfg.scale_size, gsd_m=gsd, stage="none")
        scene, _ = synthetic.build_scene(seed, cfg.scale_size, gsd, "none")
        rng = np.random.default_rng([SEEDS["scale"], i])
        specs = scale_plots(scene.layout, gsd, rng, stage, cfg.scale_size, FIELD_M2[i % len(FIELD_M2)])
        with rasterio.open(folder / f"{bg_name}.tif") as src:
            rgba = src.read()
            crs, transform = src.crs, src.transform
        valid = rgba[3] > 0
        image, kept, gains = composite.composite_scene(np.moveaxis(rgba[:3], 0, -1), valid, gsd, specs)
        name = f"scale_{i:02d}_{stage}"
        composite.write_composite(folder, name, image, valid, crs, transform, gsd, kept,
                                  {"background_seed": seed, "gains": gains})  # fmt: skip
        for suffix in (".tif", ".geojson", ".json"):
            (folder / f"{bg_name}{suffix}").unlink()
        out.append(folder / f"{name}.tif")
    return out


TESTS: list[TestSet] = [
    TestSet("generated", "(a) generator scenes, in distribution", build_generated),
    TestSet("holdout", "(b) appearance hold-out", build_holdout, holdout_pending),
    TestSet("composites", "(c) real frames + rendered plots", build_composites),
    TestSet("negatives", "(d) real frames, no poppy", build_negatives),
    TestSet("scale", "(e) plot size 1.5-2,000 m2, context, stage, GSD", build_scale),
]


def build_all(root: Path, cfg: Config, negatives: Path, only: Sequence[str] | None = None) -> dict[str, list[Scene]]:
    """Build (or reuse) every test's scenes under ``root/<test>/``; a finished folder records its settings."""
    scenes: dict[str, list[Scene]] = {}
    for test in TESTS:
        if only and test.key not in only:
            continue
        if test.pending() is not None:
            continue
        folder = root / test.key
        stamp = folder / "built.json"
        # Only the settings of this test: changing one test's size rebuilds that test alone.
        prefix = "generated" if test.key == "holdout" else test.key  # the hold-out mirrors (a)'s sizes
        mine = {k: v for k, v in dataclasses.asdict(cfg).items() if k.split("_")[0] == prefix}
        want = {"config": mine, "seeds": SEEDS, "negatives": str(negatives)}
        if not (stamp.is_file() and json.loads(stamp.read_text()) == want):
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.iterdir():
                old.unlink()
            t0 = time.perf_counter()
            rasters = test.build(folder, cfg, negatives)
            print(f"built {len(rasters)} {test.key} scenes in {time.perf_counter() - t0:.0f} s", flush=True)
            stamp.write_text(json.dumps(want))
        rasters = sorted(p for p in folder.glob("*.tif") if not p.name.endswith(".prob.tif"))
        scenes[test.key] = [Scene.from_raster(p) for p in rasters]
    return scenes


# --- running models --------------------------------------------------------------------------------------------


def run_model(
    weights: str, scenes: dict[str, list[Scene]], work: Path, device: str, sensitivity: str = "balanced"
) -> tuple[str, float, list]:
    """Predict and score every scene with one model: ``(model name, threshold, outcomes)``.

    Each model is scored at the operating point ``infer.py --sensitivity`` picks (``balanced`` is its default), so a
    table says what users get: for a two-stage model on the judge's plot scores, else on pixel probabilities from
    the model's validation sweep (a checkpoint without one: its stored threshold).
    """
    from detect.judge import resolve_operating_point
    from detect.predict import predict_raster
    from models.checkpoint import load_checkpoint, load_judge

    model, spec = load_checkpoint(weights)
    stage2 = load_judge(weights)
    judge: Judge | None = None
    if stage2 is not None:  # the first stage proposes at its own threshold; the judge's point applies to scores
        judge = (spec.threshold, stage2[0], stage2[1])
    threshold = resolve_operating_point(spec, stage2[1] if stage2 else None, sensitivity).threshold
    outcomes = []
    for test, group in scenes.items():
        for scene in group:
            prob = work / f"{test}__{scene.name}.prob.tif"
            predict_raster(scene.raster, model, spec, prob_path=prob, device=device, progress=False, overwrite=True)
            outcomes.append(score_scene(test, scene, prob, threshold, judge))
            prob.unlink()
    return spec.name + (" + judge" if judge else ""), threshold, outcomes


def plot_pr(curves: dict[str, list[dict]], path: Path) -> None:
    """One panel per test: precision against recall (false area per hectare against threshold for negatives)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = [t.key for t in TESTS if any(p["test"] == t.key for pts in curves.values() for p in pts)]
    fig, axes = plt.subplots(1, len(tests), figsize=(4 * len(tests), 3.6), squeeze=False)
    for ax, test in zip(axes[0], tests, strict=True):
        for model, pts in curves.items():
            pts = [p for p in pts if p["test"] == test]
            if test == "negatives":
                ax.plot([p["threshold"] for p in pts], [p["fp_m2_per_ha"] for p in pts], marker="o", label=model)
                ax.set(xlabel="threshold", ylabel="false area, m2/ha", yscale="symlog")
            else:
                ax.plot([p["recall"] for p in pts], [p["precision"] for p in pts], marker="o", label=model)
                ax.set(xlabel="plot recall", ylabel="plot precision", xlim=(0, 1), ylim=(0, 1))
        ax.set_title(next(t.title for t in TESTS if t.key == test), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="checkpoints (.pt) or 'default', one table each (at most 2)")
    p.add_argument("--out", type=Path, default=REPO / "bench_out/generalisation", help="output folder")
    p.add_argument("--negatives", type=Path, default=DEFAULT_NEGATIVES, help="the real negatives folder")
    p.add_argument("--quick", action="store_true", help="small test sets (about 3 minutes for one model)")
    p.add_argument("--tests", default=None, help="comma-separated subset of: " + ",".join(t.key for t in TESTS))
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument(
        "--sensitivity",
        default="balanced",
        choices=("high", "balanced", "low"),
        help="the operating point each model is scored at, as infer.py picks it (default balanced, infer.py's)",
    )
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    try:
        if len(args.models) > 2:
            raise PoppyError(f"{len(args.models)} models given; compare at most 2 per run")
        only = [t.strip() for t in args.tests.split(",")] if args.tests else None
        unknown = sorted(set(only or []) - {t.key for t in TESTS})
        if unknown:
            raise PoppyError(f"--tests {','.join(unknown)}: unknown; choose from {','.join(t.key for t in TESTS)}")
        if not args.negatives.is_dir() and (only is None or {"composites", "negatives"} & set(only)):
            raise PoppyError(f"--negatives {args.negatives}: no such folder; give ../shared/data/real/negatives")
        cfg = Config.quick() if args.quick else Config()
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        scenes = build_all(out / ("scenes_quick" if args.quick else "scenes"), cfg, args.negatives, only)
        pending = [(t.key, why) for t in TESTS if (why := t.pending()) is not None and (not only or t.key in only)]
        tests = [t.key for t in TESTS]
        all_rows, curves = [], {}
        for weights in args.models:
            t1 = time.perf_counter()
            name, threshold, outcomes = run_model(weights, scenes, out, args.device, args.sensitivity)
            label = f"{name} ({Path(weights).name})"
            rows = table_rows(outcomes, tests)
            text = format_table(label, threshold, rows, pending)
            print(text, flush=True)
            print(f"scored in {time.perf_counter() - t1:.0f} s", flush=True)
            (out / f"table_{Path(weights).stem}.txt").write_text(text + "\n")
            all_rows += [{"model": label, "threshold": threshold, **r} for r in rows]
            curves[label] = [pt for t in tests for pt in pr_points(outcomes, t)]
        with open(out / "generalisation.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(all_rows[0]))
            w.writeheader()
            w.writerows(all_rows)
        with open(out / "pr_curves.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["model", "test", "threshold", "recall", "precision", "fp_m2_per_ha"])
            w.writeheader()
            w.writerows({"model": m, **p} for m, pts in curves.items() for p in pts)
        plot_pr(curves, out / "pr_curves.png")
        print(f"wrote {out}/generalisation.csv, pr_curves.csv, pr_curves.png; total {time.perf_counter() - t0:.0f} s")
    except PoppyError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
