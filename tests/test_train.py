"""train.py end to end on tiny hand-made scenes: outputs, exact resumption, fine-tuning and refusals."""

from __future__ import annotations

import csv
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine

import train
import training.loop
import training.trainer
from models.checkpoint import load_checkpoint, load_training_state, read_train_args

UTM = "EPSG:32650"
GSD = 0.03
N = 192  # 5.76 m x 5.76 m scenes
TINY = '{"base_channels": 4, "depth": 2}'
FAST = [
    "--arch-args", TINY, "--chip-size", "64", "--chips-per-epoch", "8", "--batch-size", "4", "--workers", "0",
    "--val-tile", "96", "--device", "cpu", "--seed", "3", "--quiet",
]  # fmt: skip
VAL_FIELDS = ("val_threshold", "val_plot_precision", "val_plot_recall", "val_plot_f1", "val_pixel_iou",
              "val_fp_m2_per_ha", "loss", "lr", "best")  # fmt: skip


def write_scene(folder: Path, name: str, squares: list[tuple[int, int, int]], x0: float = 500000.0) -> Path:
    """A green field with red squares ``(row, col, size)`` in pixels, each labelled as poppy."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.empty((3, N, N), dtype=np.uint8)
    rgb[:] = np.array([70, 120, 60], dtype=np.uint8)[:, None, None]
    transform = Affine(GSD, 0, x0, 0, -GSD, 4000000.0)
    polys = []
    for r, c, size in squares:
        rgb[:, r : r + size, c : c + size] = np.array([220, 40, 40], dtype=np.uint8)[:, None, None]
        (left, top), (right, bottom) = transform * (c, r), transform * (c + size, r + size)
        polys.append(shapely.box(left, bottom, right, top))
    with rasterio.open(
        folder / f"{name}.tif",
        "w",
        driver="GTiff",
        height=N,
        width=N,
        count=3,
        dtype="uint8",
        crs=UTM,
        transform=transform,
    ) as ds:
        ds.write(rgb)
    fc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": UTM}},
        "features": [{"type": "Feature", "properties": {"stage": "flowering"},
                      "geometry": shapely.geometry.mapping(p)} for p in polys],
    }  # fmt: skip
    (folder / f"{name}.geojson").write_text(json.dumps(fc))
    return folder / f"{name}.tif"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_scene(folder, "a", [(20, 20, 50), (120, 100, 40)])
    write_scene(folder, "b", [(60, 60, 60)], x0=500100.0)
    write_scene(folder, "c", [(30, 110, 45)], x0=500200.0)
    return folder


def run(*argv: str | Path) -> int:
    return train.main(train.parse_args([str(a) for a in argv]))


def log_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_run_writes_log_checkpoints_and_metrics(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run("--data", data, "--out", out, "--epochs", "2", *FAST) == 0
    rows = log_rows(out)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(r["val_threshold"] and r["val_plot_recall"] and float(r["loss"]) > 0 for r in rows)
    split = json.loads((out / "split.json").read_text())
    assert len(split["train"]) == 2 and len(split["val"]) == 1  # one whole orthomosaic held out of three
    assert not set(split["train"]) & set(split["val"])
    model, spec = load_checkpoint(out / "best.pt")
    metrics = json.loads((out / "metrics.json").read_text())
    assert spec.threshold == metrics["best"]["threshold"]
    assert 0.05 <= spec.threshold <= 0.95
    assert spec.arch == "fastunet" and spec.arch_args == {"base_channels": 4, "depth": 2}
    assert spec.gsd_m == 0.03 and spec.name == "run" and len(spec.data_hash) == 64
    assert spec.train_args["chips_per_epoch"] == 8 and spec.metrics["epoch"] == metrics["best_epoch"]
    # the whole config is in the checkpoint (what --resume reads back), the same as settings.json
    assert read_train_args(out / "last.pt") == json.loads((out / "settings.json").read_text()) == spec.train_args
    assert spec.metrics["chosen"]["labels"] == 1  # the held-out scene has one plot
    best_rows = [r for r in rows if r["best"] == "1"]
    assert best_rows and int(best_rows[-1]["epoch"]) == metrics["best_epoch"]
    assert (out / "val").is_dir() and load_training_state(out / "last.pt")["epoch"] == 2
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_resume_after_interruption_equals_an_uninterrupted_run(data: Path, tmp_path: Path, monkeypatch) -> None:
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert run("--data", data, "--out", straight, "--epochs", "2", *FAST) == 0

    real = training.loop.train_one_epoch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # in epoch 2, after one update: Ctrl-C

            def stop(i: int) -> None:
                raise KeyboardInterrupt

            kwargs["step_hook"] = stop
        return real(*args, **kwargs)

    monkeypatch.setattr(training.loop, "train_one_epoch", interrupted)
    assert run("--data", data, "--out", broken, "--epochs", "2", *FAST) == 130
    assert load_training_state(broken / "last.pt")["epoch"] == 1 and len(log_rows(broken)) == 1
    mid = torch.load(broken / "last.pt", weights_only=True)["state_dict"]
    # as if the crash came after epoch 2 was logged but before its checkpoint was saved: the row must go
    with open(broken / "log.csv", "a") as f:
        f.write("2,9.9,0.1,1,1,0.5,0,0,0,0,0,1\n")
    monkeypatch.setattr(training.loop, "train_one_epoch", real)
    assert run("--out", broken, "--resume", "--quiet") == 0

    a = torch.load(straight / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(broken / "last.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0)
    assert any(not torch.allclose(mid[k].float(), b[k].float(), atol=1e-6) for k in b)  # epoch 2 did learn
    assert [{k: r[k] for k in VAL_FIELDS} for r in log_rows(broken)] == [
        {k: r[k] for k in VAL_FIELDS} for r in log_rows(straight)
    ]
    assert load_checkpoint(broken / "best.pt")[1].threshold == load_checkpoint(straight / "best.pt")[1].threshold
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (straight, broken))
    assert ma["best"]["chosen"] == mb["best"]["chosen"] and ma["last"]["chosen"] == mb["last"]["chosen"]


def test_fine_tune_from_a_checkpoint_with_validation_folder(data: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert run("--data", data, "--out", first, "--epochs", "1", *FAST) == 0
    val = tmp_path / "checked"
    write_scene(val, "v", [(50, 50, 40)])
    out = tmp_path / "tuned"
    args = [a for a in FAST if a not in ("--arch-args", TINY)]  # the architecture comes from --init
    assert run("--data", data, "--val-data", val, "--init", first / "best.pt", "--gsd", "0.035", "--out", out,
               "--epochs", "1", "--lr", "1e-4", *args) == 0  # fmt: skip
    _, spec = load_checkpoint(out / "best.pt")
    assert spec.arch_args == {"base_channels": 4, "depth": 2} and spec.gsd_m == 0.035 and spec.name == "tuned"
    assert spec.train_args["arch"] == "fastunet" and spec.train_args["init"] == str(first / "best.pt")
    split = json.loads((out / "split.json").read_text())
    assert len(split["train"]) == 3 and split["val"] == [str(val / "v.tif")]
    # One labelled validation plot cannot place a threshold: the starting model's threshold and sweep are kept.
    _, start = load_checkpoint(first / "best.pt")
    assert spec.threshold == start.threshold
    assert spec.metrics["thresholds"] == start.metrics["thresholds"] and "own_thresholds" in spec.metrics
    assert "1 labelled plot(s), fewer than 20: kept the starting model's threshold" in spec.metrics["reason"]


def test_synthetic_scenes_are_generated_once_and_mixed_in(data: Path, tmp_path: Path, monkeypatch) -> None:
    calls = []

    def generate(out_dir: Path, count: int, seed: int, **kw) -> None:
        """Stands in for datasets.synthetic.generate: NAME.tif + NAME.geojson + NAME.json per scene."""
        calls.append((Path(out_dir).name, count, seed, kw))
        for i in range(count):
            write_scene(Path(out_dir), f"syn{i}", [(40, 40, 30 + 10 * i)], x0=600000.0 + 100 * i)
            (Path(out_dir) / f"syn{i}.json").write_text(json.dumps({"gsd_m": GSD, "stage": "capsule", "seed": i}))

    fake = types.ModuleType("datasets.synthetic")
    fake.generate = generate
    monkeypatch.setitem(sys.modules, "datasets.synthetic", fake)
    out = tmp_path / "syn"
    argv = ["--synthetic", "2", "--synthetic-val", "1", "--synthetic-size", "192", "--out", out, "--epochs", "1"]
    assert run(*argv, *FAST) == 0
    assert [c[:3] for c in calls] == [("train-n2-seed3-px192", 2, 3), ("val-n1-seed1000006-px192", 1, 1000006)]
    assert calls[0][3] == {"size": 192}
    split = json.loads((out / "split.json").read_text())
    assert [Path(p).name for p in split["train"]] == ["syn0.tif", "syn1.tif"]
    assert [Path(p).name for p in split["val"]] == ["syn0.tif"] and "val-n1" in split["val"][0]
    metrics = json.loads((out / "metrics.json").read_text())
    stage = {r["group"]: r for r in metrics["best"]["by_stage"]}
    # labels by their own stage (written as "flowering"), the scene's predictions by the sidecar's ("capsule")
    assert stage["flowering"]["labels"] == 1 and stage["capsule"]["labels"] == 0
    # a second run into another folder generates again; the same folder with --resume reuses what is there
    assert run("--out", out, "--resume", "--epochs", "2", "--quiet") == 0
    assert len(calls) == 2
    assert len(log_rows(out)) == 2


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--data", "{tmp}/missing"], "no such folder"),
        (["--data", "{tmp}/unlabelled"], "no orthomosaic with labels"),
        (["--data", "{data}", "--arch-args", "{depth: 3"], "not JSON"),
        (["--data", "{data}", "--arch", "resnet9000"], "unknown model 'resnet9000'"),
        (["--data", "{data}", "--epochs", "0"], "--epochs 0"),
        (["--data", "{data}", "--init", "{tmp}/none.pt"], "no such file"),
        (["--resume"], "no run to resume"),
        ([], "give --data DIR"),
        (["--data", "{data}", "--judge", "default", "--init", "default"], "--judge trains the second stage"),
        (["--data", "{data}", "--judge", "{tmp}/none.pt"], "no such file"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(data: Path, tmp_path: Path, capsys, argv: list[str], match: str) -> None:
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    with rasterio.open(
        unlabelled / "x.tif",
        "w",
        driver="GTiff",
        height=8,
        width=8,
        count=3,
        dtype="uint8",
        crs=UTM,
        transform=Affine(GSD, 0, 500000, 0, -GSD, 4000000),
    ) as ds:
        ds.write(np.zeros((3, 8, 8), dtype=np.uint8))
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{data}", str(data)) for a in argv]
    assert run(*argv, "--out", tmp_path / "out", "--quiet", "--workers", "0") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and match in err[-1]
    assert not (tmp_path / "out" / "last.pt").exists()


def test_resume_refuses_changed_settings(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    assert run("--data", data, "--out", out, "--epochs", "1", *FAST) == 0
    assert run("--out", out, "--resume", "--lr", "0.5") == 2
    assert "--lr 0.5: the run in" in capsys.readouterr().err
    assert run("--data", data, "--out", out, *FAST) == 2  # a new run into a used folder
    assert "already holds a run" in capsys.readouterr().err


# --- public data sets: land-cover pretraining, --init transfer, negatives --------------------------------------


def test_pretrain_on_land_cover_then_init_transfers_the_encoder(data: Path, tmp_path: Path) -> None:
    from datasets.scene.items import LANDCOVER
    from tests.test_public import write_synthetic

    lc = tmp_path / "lc"
    for i in range(3):
        write_synthetic(lc, f"s{i}", x0=500000.0 + 100 * i)
    pre = tmp_path / "pre"
    assert run("--pretrain", f"synthetic-landcover:{lc}", "--out", pre, "--epochs", "1", "--val-chips", "4", *FAST) == 0
    rows = log_rows(pre)
    assert [r["epoch"] for r in rows] == ["1"] and 0 <= float(rows[0]["val_miou"]) <= 1 and rows[0]["best"] == "1"
    model, spec = load_checkpoint(pre / "best.pt")
    assert spec.classes == tuple(LANDCOVER[k] for k in sorted(LANDCOVER) if k)
    assert spec.num_outputs == len(LANDCOVER) - 1
    metrics = json.loads((pre / "metrics.json").read_text())
    assert [c["class"] for c in metrics["best"]["classes"]] == list(spec.classes)
    assert "held out 1 of 3 scenes" in json.loads((pre / "split.json").read_text())["rule"]
    assert "mean IoU" in (pre / "best_table.txt").read_text()

    # --init from it: the same network with a 1-logit head; everything but the head is the pretrained tensors
    s = train.resolve_settings(train.parse_args(["--data", str(data), "--init", str(pre / "best.pt"),
                                                 "--out", str(tmp_path / "p"), "--quiet"]))  # fmt: skip
    poppy, pspec, s = training.trainer.build_model_and_spec(s, tmp_path / "p", resume=False)
    assert s.arch == spec.arch  # the config now records what was trained
    assert pspec.classes == ("background", "poppy") and pspec.num_outputs == 1 and pspec.arch_args == spec.arch_args
    a, b = poppy.state_dict(), model.state_dict()
    assert torch.equal(a["net.inc.0.0.weight"], b["net.inc.0.0.weight"])
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("net.head."))
    assert a["net.head.weight"].shape[0] == 1 and b["net.head.weight"].shape[0] == len(LANDCOVER) - 1

    out = tmp_path / "poppy"
    args = [x for x in FAST if x not in ("--arch-args", TINY)]  # the architecture comes from --init
    assert run("--data", data, "--init", pre / "best.pt", "--out", out, "--epochs", "1", *args) == 0
    _, final = load_checkpoint(out / "best.pt")
    assert final.classes == ("background", "poppy") and 0.05 <= final.threshold <= 0.95
    assert final.train_args["init"] == str(pre / "best.pt")


def test_pretrain_run_resumes(tmp_path: Path) -> None:
    from tests.test_public import write_synthetic

    lc = tmp_path / "lc"
    for i in range(2):
        write_synthetic(lc, f"s{i}", x0=500000.0 + 100 * i)
    out = tmp_path / "pre"
    assert run("--pretrain", f"synthetic-landcover:{lc}", "--out", out, "--epochs", "1", "--val-chips", "4", *FAST) == 0
    assert run("--out", out, "--resume", "--epochs", "2", "--quiet") == 0
    assert [r["epoch"] for r in log_rows(out)] == ["1", "2"] and load_training_state(out / "last.pt")["epoch"] == 2


def test_negatives_from_a_public_set_are_mixed_into_poppy_chips(data: Path, tmp_path: Path, monkeypatch) -> None:
    from tests.test_public import write_loveda

    root = tmp_path / "LoveDA"
    write_loveda(root, "Train", "Rural", "1366")
    seen = {}
    real = training.trainer.with_negatives

    def spy(chips, s, gsd_m):
        seen["result"] = real(chips, s, gsd_m)
        return seen["result"]

    monkeypatch.setattr(training.trainer, "with_negatives", spy)
    out = tmp_path / "neg"
    argv = ["--data", data, "--negatives", f"loveda-rural:{root}", "--negative-share", "0.5", "--out", out]
    assert run(*argv, "--epochs", "1", *FAST) == 0
    mixed, fingerprint, described = seen["result"]
    assert mixed.share == 0.5 and len(mixed) == 8 and "LoveDA Rural" in described and len(fingerprint) == 64
    negatives = [i for i in range(8) if mixed.is_negative(i)]
    assert negatives and all(1 not in mixed[i][1] for i in negatives)  # public chips are never poppy
    assert json.loads((out / "settings.json").read_text())["negatives"] == f"loveda-rural:{root.resolve()}"
    assert len(load_checkpoint(out / "best.pt")[1].data_hash) == 64


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--pretrain", "imagenet:/x"], "unknown data set 'imagenet'"),
        (["--pretrain", "loveda:{tmp}/missing"], "no such folder"),
        (["--pretrain", "synthetic-landcover:{tmp}", "--data", "{data}"], "--pretrain trains land cover"),
        (["--pretrain", "synthetic-landcover:{tmp}"], "--landcover"),
        (["--data", "{data}", "--negatives", "loveda:{tmp}"], "not a LoveDA folder"),
        (["--data", "{data}", "--negatives", "loveda:{tmp}", "--negative-share", "1.5"], "--negative-share 1.5"),
        (["--data", "{data}", "--negative-share", "0.3"], "--negative-share needs --negatives"),
        (["--data", "{data}", "--val-chips", "10"], "--val-chips applies to --pretrain runs only"),
    ],
)
def test_bad_public_data_arguments_exit_2(data: Path, tmp_path: Path, capsys, argv: list[str], match: str) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{data}", str(data)) for a in argv]
    assert run(*argv, "--out", tmp_path / "out", *FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and match in err[-1]
    assert not (tmp_path / "out" / "last.pt").exists()


# --- hard-negative mining ----------------------------------------------------------------------------------------


def test_hard_negatives_are_mined_before_later_epochs_and_a_resume_draws_the_same_chips(
    data: Path, tmp_path: Path, monkeypatch
) -> None:
    hard = ["--hard-negatives", "0.6", "--mine-every", "2", "--positive-fraction", "0.3"]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    mined_at: list[int] = []
    real_mine = training.trainer.mine_hard_negatives

    def spy(*args, **kwargs):
        result = real_mine(*args, **kwargs)
        mined_at.append(result.hard_count)
        return result

    monkeypatch.setattr(training.trainer, "mine_hard_negatives", spy)
    assert run("--data", data, "--out", straight, "--epochs", "4", *hard, *FAST) == 0
    assert len(mined_at) == 1  # before epoch 3 only: not before the first epoch of a new network, then every 2
    record = json.loads((straight / "hard_negatives.json").read_text())
    assert record["epoch"] == 3 and len(record["sources"]) == 2  # one list per training orthomosaic
    assert sum(len(s["geoms"]) for s in record["sources"]) == mined_at[-1] > 0  # the young model has false alarms
    assert json.loads((straight / "settings.json").read_text())["hard_negatives"] == 0.6

    real = training.loop.train_one_epoch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # in epoch 4 (no mining before it): the resumed run must restore epoch 3's polygons

            def stop(i: int) -> None:
                raise KeyboardInterrupt

            kwargs["step_hook"] = stop
        return real(*args, **kwargs)

    monkeypatch.setattr(training.loop, "train_one_epoch", interrupted)
    assert run("--data", data, "--out", broken, "--epochs", "4", *hard, *FAST) == 130
    monkeypatch.setattr(training.loop, "train_one_epoch", real)
    assert run("--out", broken, "--resume", "--quiet") == 0
    a = torch.load(straight / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(broken / "last.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--hard-negatives", "0.6"], r"--hard-negatives 0.6: .*--positive-fraction 0.5 at most 1"),
        (["--hard-negatives", "-0.1"], r"--hard-negatives -0.1: must be 0 or more"),
        (["--hard-negatives", "0.2", "--mine-every", "0"], r"--mine-every 0: must be at least 1"),
    ],
)
def test_bad_hard_negative_settings_exit_2(data: Path, tmp_path: Path, capsys, argv: list[str], match: str) -> None:
    assert run("--data", data, "--out", tmp_path / "r", *argv, *FAST) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert re.search(match, err), err


# --- --judge: the second stage for a first-stage checkpoint ---------------------------------------------------------


class RedDetector(torch.nn.Module):
    """A stand-in first stage: poppy where red clearly beats green (the orange look-alikes too)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * (x[:, 0:1] - x[:, 1:2] - 1.0)


def write_val_scenes(folder: Path, count: int) -> Path:
    """``count`` scenes of four labelled red plots and one unlabelled orange look-alike each."""
    for i in range(count):
        path = write_scene(
            folder, f"v{i}", [(15, 15, 35), (15, 110, 35), (110, 15, 35), (110, 110, 35)], x0=501000.0 + 100 * i
        )
        with rasterio.open(path, "r+") as ds:
            rgb = ds.read()
            rgb[:, 70:100, 70:100] = np.array([230, 120, 30], dtype=np.uint8)[:, None, None]
            ds.write(rgb)
    return folder


def test_judge_run_writes_a_two_stage_checkpoint(data: Path, tmp_path: Path, monkeypatch) -> None:
    from models.checkpoint import ModelSpec, load_judge

    stage1 = (RedDetector(), ModelSpec(arch="fastunet", threshold=0.5, gsd_m=GSD, tile_size=96))
    monkeypatch.setattr(training.trainer, "load_checkpoint", lambda *a, **k: stage1)
    val = write_val_scenes(tmp_path / "val", 5)
    out = tmp_path / "judge"
    assert run("--judge", "stage1.pt", "--data", data, "--val-data", val, "--out", out, "--epochs", "1",
               "--chips-per-epoch", "32", "--batch-size", "16", "--min-area-m2", "0.5", "--workers", "0",
               "--device", "cpu", "--quiet") == 0  # fmt: skip
    _, spec = load_judge(out / "two_stage.pt")
    assert set(spec.operating_points) == {"high", "balanced", "low"} and spec.metrics["labels"] == 20
    report = json.loads((out / "judge_report.json").read_text())
    assert report["stage1"] == "stage1.pt" and report["true_candidates"] == 20 and report["candidates"] == 25
    assert "operating point" in (out / "judge_report.txt").read_text()
    assert json.loads((out / "settings.json").read_text())["judge"] == "stage1.pt"


def test_judge_run_refuses_too_few_validation_plots(data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from models.checkpoint import ModelSpec

    stage1 = (RedDetector(), ModelSpec(arch="fastunet", threshold=0.5, gsd_m=GSD, tile_size=96))
    monkeypatch.setattr(training.trainer, "load_checkpoint", lambda *a, **k: stage1)
    val = write_val_scenes(tmp_path / "val", 2)
    assert run("--judge", "stage1.pt", "--data", data, "--val-data", val, "--out", tmp_path / "j", "--quiet",
               "--workers", "0") == 2  # fmt: skip
    assert "hold 8 labelled plot(s), fewer than 20" in capsys.readouterr().err


# --- --aux-landcover: every pixel teaches through an auxiliary land-cover head --------------------------------------


def test_aux_landcover_trains_the_head_and_inference_ignores_it(data: Path, tmp_path: Path) -> None:
    import shutil

    from datasets.scene.items import LANDCOVER

    folder = tmp_path / "lc"
    shutil.copytree(data, folder)
    for tif in folder.glob("*.tif"):  # land cover beside each scene: grass everywhere, poppy under the labels
        with rasterio.open(tif) as ds:
            profile = {**ds.profile, "count": 1}
            red = ds.read(1) > 200
        with rasterio.open(tif.with_name(tif.stem + ".landcover.tif"), "w", **profile) as lc:
            lc.write(np.where(red, 12, 6).astype(np.uint8)[None])
    out = tmp_path / "aux"
    assert run("--data", folder, "--out", out, "--epochs", "1", "--aux-landcover", *FAST) == 0
    model, spec = load_checkpoint(out / "best.pt")
    assert spec.arch_args["aux_classes"] == len(LANDCOVER)
    assert any("aux_head" in k for k in model.state_dict())
    assert spec.train_args["aux_landcover"] is True
    model.eval()
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)  # inference sees the poppy logit only

    # Fine-tuning a checkpoint without the head adds it and keeps every other tensor.
    plain = tmp_path / "plain"
    assert run("--data", data, "--out", plain, "--epochs", "1", *FAST) == 0
    tuned = tmp_path / "tuned"
    args = [a for a in FAST if a not in ("--arch-args", TINY)]
    assert run("--data", folder, "--init", plain / "best.pt", "--aux-landcover", "--out", tuned, "--epochs", "1",
               "--lr", "1e-9", *args) == 0  # fmt: skip
    _, tuned_spec = load_checkpoint(tuned / "best.pt")
    assert tuned_spec.arch_args == {"base_channels": 4, "depth": 2, "aux_classes": len(LANDCOVER)}
