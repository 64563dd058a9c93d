"""The catalogue of bad and awkward inputs: what a user may hand ``infer.py`` or ``train.py``, and what must happen.

Each :class:`Case` builds its files in a temporary folder and returns the command line; the outcome is the exit
code and words the one-line message must contain. ``tests/test_bad_inputs.py`` runs every case;
``tools/bad_input_table.py`` runs them too and writes ``docs/bad_inputs.md`` from the messages it got, so the
table shows what the software really says.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from models import build_model
from models.checkpoint import ModelSpec, save_checkpoint

GSD = 0.03
ARCH_ARGS = {"base_channels": 8, "depth": 2}
UTM = "EPSG:32650"
ORIGIN = Affine(GSD, 0, 500000.0, 0, -GSD, 4000000.0)


@dataclass(frozen=True)
class Kit:
    """Shared files the cases use: a tiny working checkpoint."""

    weights: Path


@dataclass(frozen=True)
class Case:
    """One bad or awkward input.

    Attributes:
        name: Short identifier (the test id).
        what: The input, as the table shows it.
        build: ``build(tmp, kit) -> argv`` writes the files under ``tmp`` and returns the command line
            (without ``--quiet --device cpu``, which the runner adds for ``infer.py``).
        code: Expected exit code.
        words: Fragments the one-line message must contain (``{tmp}`` is replaced by the folder).
        tool: ``"infer"`` or ``"train"``.
        setup: Optional ``setup(monkeypatch)`` before the run (to simulate a full disk or a read-only folder).
        check: Optional ``check(tmp)`` after the run: asserts on what was (or was not) written.
    """

    name: str
    what: str
    build: Callable[[Path, Kit], list[str]]
    code: int
    words: tuple[str, ...]
    tool: str = "infer"
    setup: Callable[[object], None] | None = None
    check: Callable[[Path], None] | None = None


# ----------------------------------------------------------------------------------------------------- builders


def tiny_checkpoint(path: Path, **spec_kw: object) -> Path:
    """A fastunet with random weights (seed 0) and a 64-px tile, saved as a real checkpoint."""
    bands = spec_kw.pop("bands", ("red", "green", "blue"))
    kw: dict = {"arch": "fastunet", "arch_args": ARCH_ARGS, "gsd_m": GSD, "tile_size": 64, "threshold": 0.5}
    kw.update(name="tiny-test", bands=tuple(bands), mean=(0.5,) * len(bands), std=(0.25,) * len(bands))
    kw.update(spec_kw)
    spec = ModelSpec(**kw)
    torch.manual_seed(0)
    model = build_model("fastunet", in_channels=len(bands), num_classes=spec.num_outputs, **ARCH_ARGS)
    save_checkpoint(path, model, spec)
    return path


def write_tif(
    path: Path,
    data: np.ndarray | None = None,
    *,
    count: int = 4,
    dtype: str = "uint8",
    height: int = 48,
    width: int = 56,
    crs: object = UTM,
    transform: Affine | None = ORIGIN,
    **profile: object,
) -> Path:
    """A small GeoTIFF: textured RGB(A) by default, or ``data`` ``[bands, h, w]`` as given."""
    if data is None:
        rng = np.random.default_rng(1)
        data = rng.integers(40, 200, size=(count, height, width)).astype(dtype)
        if count == 4 and dtype == "uint8":
            data[3] = 255
    count, height, width = data.shape
    kw: dict = {"driver": "GTiff", "height": height, "width": width, "count": count, "dtype": str(data.dtype)}
    if crs is not None:
        kw["crs"] = crs
    if transform is not None:
        kw["transform"] = transform
    kw.update(profile)
    with rasterio.open(path, "w", **kw) as ds:
        ds.write(data)
    return path


def _infer(tmp: Path, kit: Kit, *inputs: Path | str, extra: tuple[str, ...] = ()) -> list[str]:
    return [*(str(p) for p in inputs), "--out", str(tmp / "out"), "--weights", str(kit.weights), *extra]


def _good(tmp: Path, name: str = "site.tif") -> Path:
    return write_tif(tmp / name)


# ----------------------------------------------------------------------------------------------- output folder


def _out_is_file(tmp: Path, kit: Kit) -> list[str]:
    (tmp / "results").write_text("a file where the folder should be")
    return [str(_good(tmp)), "--out", str(tmp / "results"), "--weights", str(kit.weights)]


def _out_below_file(tmp: Path, kit: Kit) -> list[str]:
    (tmp / "results").write_text("a file")
    return [str(_good(tmp)), "--out", str(tmp / "results" / "today"), "--weights", str(kit.weights)]


def _out_name_too_long(tmp: Path, kit: Kit) -> list[str]:
    return [str(_good(tmp)), "--out", str(tmp / ("x" * 300)), "--weights", str(kit.weights)]


def _out_read_only(tmp: Path, kit: Kit) -> list[str]:
    (tmp / "out").mkdir()
    return _infer(tmp, kit, _good(tmp))


def _read_only_setup(monkeypatch: object) -> None:
    # Tests run as root, for whom chmod does not stop writes: simulate the read-only mount at the probe.
    import detect.inputs

    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(detect.inputs.tempfile, "mkstemp", refuse)  # type: ignore[attr-defined]


def _disk_full_setup(monkeypatch: object) -> None:
    import shutil

    import detect.inputs

    def tiny(path: object) -> shutil._ntuple_diskusage:  # type: ignore[name-defined]
        return shutil._ntuple_diskusage(10 << 30, 10 << 30, 5 << 20)  # type: ignore[attr-defined]

    monkeypatch.setattr(detect.inputs.shutil, "disk_usage", tiny)  # type: ignore[attr-defined]


CASES: list[Case] = [
    Case(
        "out-is-file",
        "`--out` names an existing file",
        _out_is_file,
        2,
        ("--out", "results: is a file, not a folder", "give a folder"),
    ),
    Case(
        "out-below-file",
        "`--out` lies below a file (`results/today` where `results` is a file)",
        _out_below_file,
        2,
        ("cannot be created because", "is a file"),
    ),
    Case(
        "out-name-too-long",
        "`--out` folder name of 300 characters",
        _out_name_too_long,
        2,
        ("too long for a folder", "shorter --out"),
    ),
    Case(
        "out-not-writable",
        "`--out` folder the user may not write to",
        _out_read_only,
        2,
        ("is not writable for this user", "choose a folder you can write to"),
        setup=_read_only_setup,
    ),
    Case(
        "disk-full",
        "5 MB free on the disk of `--out`",
        lambda tmp, kit: _infer(tmp, kit, _good(tmp)),
        2,
        ("need about", "MB free", "free some space"),
        setup=_disk_full_setup,
    ),
]


# ----------------------------------------------------------------------------------------------- raster inputs


def _summary(tmp: Path, stem: str = "site") -> dict:
    return json.loads((tmp / "out" / f"{stem}.summary.json").read_text())


def _file(name: str, content: bytes) -> Callable[[Path, Kit], list[str]]:
    def build(tmp: Path, kit: Kit) -> list[str]:
        (tmp / name).write_bytes(content)
        return _infer(tmp, kit, tmp / name)

    return build


def _truncated(tmp: Path, kit: Kit) -> list[str]:
    src = write_tif(tmp / "full.tif", count=3, height=512, width=512, tiled=True, blockxsize=256, blockysize=256)
    data = src.read_bytes()
    (tmp / "site.tif").write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy
    src.unlink()
    return _infer(tmp, kit, tmp / "site.tif")


def _photo(ext: str) -> Callable[[Path, Kit], list[str]]:
    def build(tmp: Path, kit: Kit) -> list[str]:
        img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp / f"DJI_0042.{ext}"), img)
        return _infer(tmp, kit, tmp / f"DJI_0042.{ext}")

    return build


def _frames(*kinds: str, extra: tuple[str, ...] = ()) -> Callable[[Path, Kit], list[str]]:
    """A folder of drone JPEGs tagged like a DJI camera's (``tests/frames_kit.py``), one per kind: ``ok``,
    ``no-gps``, ``oblique`` or ``unknown-camera``."""

    def build(tmp: Path, kit: Kit) -> list[str]:
        from tests.frames_kit import cut_frame, make_ortho

        ortho = make_ortho(8.0, [])
        folder = tmp / "DCIM"
        folder.mkdir()
        for i, kind in enumerate(kinds, 1):
            kw = {"no-gps": {"gps": False}, "oblique": {"pitch": -60.0}, "unknown-camera": {"model": "FC9999"}}
            cut_frame(folder / f"DJI_{i:04d}.JPG", ortho, (0.0, 0.0), 9.0, 0.0, size=(60, 80), **kw.get(kind, {}))
        return _infer(tmp, kit, folder, extra=extra)

    return build


def _raster(**kw: object) -> Callable[[Path, Kit], list[str]]:
    extra = tuple(kw.pop("extra", ()))  # type: ignore[arg-type]
    name = str(kw.pop("name", "site.tif"))

    def build(tmp: Path, kit: Kit) -> list[str]:
        make = kw.get("data")
        args = dict(kw)
        if callable(make):
            args["data"] = make()
        return _infer(tmp, kit, write_tif(tmp / name, **args), extra=extra)  # type: ignore[arg-type]

    return build


def _gcps(tmp: Path, kit: Kit) -> list[str]:
    gcps = [
        GroundControlPoint(0, 0, 500000.0, 4000000.0),
        GroundControlPoint(0, 50, 500001.5, 4000000.0),
        GroundControlPoint(40, 0, 500000.0, 3999998.8),
    ]
    path = write_tif(tmp / "site.tif", count=3, crs=None, transform=None)
    with rasterio.open(path, "r+") as ds:
        ds.gcps = (gcps, CRS.from_epsg(32650))
    return _infer(tmp, kit, path)


def _rgb(dtype: str, low: float, high: float, bands: int = 3, seed: int = 2) -> Callable[[], np.ndarray]:
    def make() -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.uniform(low, high, (bands, 48, 56)).astype(dtype)

    return make


def _twelve_bit() -> np.ndarray:
    data = _rgb("uint16", 300, 3900)()
    data[0, 0, 0] = 4095
    return data


def _alpha_zero() -> np.ndarray:
    data = _rgb("uint8", 40, 200, bands=4)()
    data[3] = 0
    return data


def _sliver() -> np.ndarray:
    data = _rgb("uint8", 40, 200, bands=4)()
    data[3] = 0
    data[3, 20:22, :] = 255  # a 6 cm strip across the raster: the edge of a flight
    return data


def _fields(blur: float = 0.0, gain: float = 1.0, valid: int | None = None) -> Callable[[], np.ndarray]:
    """RGBA 160 x 160 px of 16-px fields with sharp borders; blurred, brightened or cut to a corner as asked."""

    def make() -> np.ndarray:
        rng = np.random.default_rng(2)
        rgb = np.kron(rng.integers(40, 200, size=(3, 10, 10)), np.ones((1, 16, 16))).astype(np.float32)
        if blur:
            rgb = cv2.GaussianBlur(rgb.transpose(1, 2, 0), (0, 0), blur).transpose(2, 0, 1)
        alpha = np.full((1, 160, 160), 255, np.float32)
        if valid is not None:
            alpha[:] = 0
            alpha[:, :valid, :valid] = 255
        return np.clip(np.concatenate([rgb * gain, alpha]), 0, 255).astype(np.uint8)

    return make


def _scaling_is(low: float, high: float, words: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        raster = _summary(tmp)["raster"]
        assert raster["value_range"] == [low, high], raster
        assert words in raster["value_scaling"], raster

    return check


def _bands_are(bands: list[int]) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        assert _summary(tmp)["raster"]["bands_rgb"] == bands

    return check


def _runs(tmp: Path) -> None:
    assert _summary(tmp)["plots"]["count"] >= 0


def _forced(tmp: Path) -> None:
    quality = _summary(tmp)["quality"]
    assert quality["verdict"] == "refuse" and quality["forced"] is True


ROTATED = Affine(GSD * 0.8, GSD * 0.6, 500000.0, GSD * 0.6, -GSD * 0.8, 4000000.0)
SHEARED = Affine(GSD, GSD * 0.2, 500000.0, 0, -GSD, 4000000.0)

CASES += [
    Case(
        "zero-byte", "a 0-byte `.tif` (a copy that never started)", _file("site.tif", b""), 2, ("is empty (0 bytes)",)
    ),
    Case("truncated", "a GeoTIFF cut at two thirds (an interrupted copy)", _truncated, 2, ("truncated or damaged",)),
    Case(
        "not-a-raster",
        "a text file named `.tif`",
        _file("site.tif", b"flight notes, not an image\n"),
        2,
        ("not a raster GDAL can read",),
    ),
    Case("photo-png", "a single drone photo saved as PNG", _photo("png"), 2, ("is a photo (PNG", "photogrammetry")),
    Case("photo-jpeg", "a single drone photo (JPEG)", _photo("jpg"), 2, ("is a photo (JPEG", "OpenDroneMap")),
    Case(
        "frames-none-placeable",
        "a folder of raw drone frames (JPEG, DJI tags), none placeable: one without GPS, one oblique",
        _frames("no-gps", "oblique"),
        2,
        ("none of the 2 frame(s) could be placed", "DJI_0001.JPG: no GPS position", "DJI_0002.JPG: oblique"),
    ),
    Case(
        "frames-unknown-camera",
        "raw drone frames from a camera missing from the camera table",
        _frames("unknown-camera"),
        2,
        ("unknown camera FC9999 (DJI)", "--camera SENSOR_WIDTH_MM,FOCAL_MM"),
    ),
    Case(
        "frames-camera-one-number",
        "raw drone frames with `--camera 13.2` (no focal length)",
        _frames("ok", extra=("--camera", "13.2")),
        2,
        ("--camera 13.2: give the sensor width and the focal length in millimetres",),
    ),
    Case(
        "tiff-no-georef",
        "a TIFF with neither CRS nor geotransform",
        _raster(count=3, crs=None, transform=None),
        2,
        ("an image without georeferencing", "not an orthomosaic"),
    ),
    Case(
        "no-crs",
        "a GeoTIFF with a geotransform but no CRS",
        _raster(count=3, crs=None),
        2,
        ("has no coordinate reference system", "gdal_edit.py -a_srs"),
    ),
    Case("gcps", "ground control points instead of a geotransform", _gcps, 2, ("ground control points", "gdalwarp")),
    Case(
        "local-crs",
        "a local (engineering) CRS, not tied to the Earth",
        _raster(count=3, crs=CRS.from_wkt('LOCAL_CS["site grid",UNIT["metre",1]]')),
        2,
        ("local or engineering", "projected CRS"),
    ),
    Case("rotated", "a rotated geotransform", _raster(count=3, transform=ROTATED), 2, ("rotated or sheared",)),
    Case("sheared", "a sheared geotransform", _raster(count=3, transform=SHEARED), 2, ("warp it north-up",)),
    Case(
        "one-band",
        "one band (grey, thermal or a DEM)",
        _raster(data=_rgb("uint8", 0, 255, bands=1)),
        2,
        ("has 1 band(s)", "red, green and blue"),
    ),
    Case(
        "two-bands",
        "two bands (grey and alpha)",
        _raster(data=_rgb("uint8", 0, 255, bands=2)),
        2,
        ("has 2 band(s)", "grey with alpha"),
    ),
    Case(
        "five-bands",
        "five bands (multispectral), no `--bands`",
        _raster(data=_rgb("uint16", 0, 4000, bands=5)),
        2,
        ("has 5 bands", "--bands 3,2,1"),
    ),
    Case(
        "five-bands-picked",
        "five bands with `--bands 3,2,1`",
        _raster(data=_rgb("uint16", 0, 4000, bands=5), extra=("--bands", "3,2,1")),
        0,
        ("12-bit",),
        check=_bands_are([3, 2, 1]),
    ),
    Case(
        "bands-out-of-range",
        "`--bands 3,2,9` on a five-band raster",
        _raster(data=_rgb("uint16", 0, 4000, bands=5), extra=("--bands", "3,2,9")),
        2,
        ("names band 9 but the raster has 5",),
    ),
    Case(
        "bands-malformed",
        "`--bands 1,2` (two numbers)",
        _raster(count=3, extra=("--bands", "1,2")),
        2,
        ("--bands 1,2", "give the band numbers of red, green and blue"),
    ),
    Case(
        "grey-as-rgb",
        "one band with `--bands 1,1,1`",
        _raster(data=_rgb("uint8", 0, 255, bands=1), extra=("--bands", "1,1,1")),
        0,
        (),
        check=_bands_are([1, 1, 1]),
    ),
    Case(
        "uint16-12bit",
        "12-bit imagery stored as 16-bit (values 0-4095)",
        _raster(data=_twelve_bit),
        0,
        ("scaled as 12-bit, 0-4095",),
        check=_scaling_is(0, 4095, "data maximum 4095"),
    ),
    Case(
        "uint16-full",
        "16-bit imagery using the full range",
        _raster(data=_rgb("uint16", 0, 65535)),
        0,
        ("scaled as 16-bit, 0-65535",),
        check=_scaling_is(0, 65535, "16-bit"),
    ),
    Case(
        "uint16-nbits",
        "16-bit file tagged NBITS=12",
        _raster(data=_rgb("uint16", 0, 3000), nbits=12),
        0,
        ("NBITS=12 tag",),
        check=_scaling_is(0, 4095, "NBITS"),
    ),
    Case(
        "float-reflectance",
        "float32 reflectance 0-1",
        _raster(data=_rgb("float32", 0.02, 0.9)),
        0,
        ("reflectance 0-1",),
        check=_scaling_is(0, 1, "reflectance"),
    ),
    Case(
        "float-large",
        "float32 values 0-10000 (scaled reflectance)",
        _raster(data=_rgb("float32", 0, 10000)),
        0,
        ("stretched from their 0.1-99.9 % range",),
    ),
    Case(
        "int16-negative",
        "int16 values -500 to 3000",
        _raster(data=_rgb("int16", -500, 3000)),
        0,
        ("int16 values stretched",),
    ),
    Case(
        "complex",
        "complex64 pixels",
        _raster(data=lambda: np.zeros((3, 48, 56), np.complex64)),
        2,
        ("pixel type complex64 is not supported",),
    ),
    Case(
        "all-alpha-zero",
        "RGBA with alpha 0 everywhere",
        _raster(data=_alpha_zero),
        2,
        ("holds no valid pixel", "alpha band"),
    ),
    Case(
        "all-nodata",
        "every pixel equal to the nodata value",
        _raster(data=lambda: np.zeros((3, 48, 56), np.uint8), nodata=0),
        2,
        ("holds no valid pixel", "nodata value 0"),
    ),
    Case("sliver", "a footprint 2 px (6 cm) high across the raster", _raster(data=_sliver), 0, (), check=_runs),
    Case(
        "gate-blurred",
        "out of focus: blurred by a Gaussian of 6 px (18 cm)",
        _raster(data=_fields(blur=6)),
        2,
        ("refused by the quality gates: blurred (blur", "pass --force to run it anyway"),
    ),
    Case(
        "gate-over-exposed",
        "over-exposed: 6x the light, most of the ground clipped to white",
        _raster(data=_fields(gain=6)),
        2,
        ("refused by the quality gates: over-exposed:", "of the ground clipped to white"),
    ),
    Case(
        "gate-mostly-nodata",
        "a valid corner of 10 x 10 px in 160 x 160 (a wrong export extent)",
        _raster(data=_fields(valid=10)),
        2,
        ("refused by the quality gates: 99.6% of the raster is nodata",),
    ),
    Case(
        "gate-forced",
        "the out-of-focus one with --force",
        _raster(data=_fields(blur=6), extra=["--force"]),
        0,
        ("quality refuse (run anyway: --force)",),
        check=_forced,
    ),
    Case(
        "gsd-coarse",
        "GSD 50 cm/px against the model's 3 cm",
        _raster(count=3, transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0)),
        2,
        ("16.7x coarser", "--allow-gsd-mismatch"),
    ),
    Case(
        "gsd-coarse-allowed",
        "GSD 10 cm/px with `--allow-gsd-mismatch`",
        _raster(count=3, transform=Affine(0.1, 0, 500000.0, 0, -0.1, 4000000.0), extra=("--allow-gsd-mismatch",)),
        0,
        ("upsampling it 3.3x as asked",),
        check=_runs,
    ),
    Case(
        "gsd-fine",
        "GSD 0.1 mm/px (CRS in the wrong units)",
        _raster(count=3, transform=Affine(1e-4, 0, 500000.0, 0, -1e-4, 4000000.0)),
        2,
        ("finer than any drone survey", "check the CRS and its units"),
    ),
]


# ------------------------------------------------------------------------------------------------------ weights


def _weights(make: Callable[[Path], Path]) -> Callable[[Path, Kit], list[str]]:
    def build(tmp: Path, kit: Kit) -> list[str]:
        return _infer(tmp, Kit(weights=make(tmp)), _good(tmp))

    return build


def _damaged(tmp: Path) -> Path:
    good = tiny_checkpoint(tmp / "good.pt").read_bytes()
    (tmp / "model.pt").write_bytes(good[: len(good) // 2])
    return tmp / "model.pt"


def _random_bytes(tmp: Path) -> Path:
    (tmp / "model.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    return tmp / "model.pt"


def _plain_state_dict(tmp: Path) -> Path:
    torch.save(build_model("fastunet", in_channels=3, num_classes=1, **ARCH_ARGS).state_dict(), tmp / "model.pt")
    return tmp / "model.pt"


def _other_arch(tmp: Path) -> Path:
    path = tiny_checkpoint(tmp / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "segformer_b5"
    torch.save(payload, path)
    return path


def _wrong_shapes(tmp: Path) -> Path:
    path = tiny_checkpoint(tmp / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["arch_args"] = {"base_channels": 16, "depth": 2}
    torch.save(payload, path)
    return path


class _RunsCode:
    """A pickle that runs a shell command when unpickled: what a booby-trapped .pt file carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _crafted(tmp: Path) -> Path:
    torch.save({"poppy_survey_checkpoint": True, "x": _RunsCode(tmp / "PWNED")}, tmp / "model.pt")
    return tmp / "model.pt"


def _no_code_ran(tmp: Path) -> None:
    assert not (tmp / "PWNED").exists(), "loading the weights ran code"


CASES += [
    Case(
        "weights-missing",
        "`--weights` names a missing file",
        _weights(lambda tmp: tmp / "nope.pt"),
        2,
        ("nope.pt: no such file",),
    ),
    Case("weights-truncated", "a checkpoint cut in half", _weights(_damaged), 2, ("damaged",)),
    Case("weights-random", "4 KB of random bytes as `--weights`", _weights(_random_bytes), 2, ("damaged",)),
    Case(
        "weights-state-dict",
        "a bare `state_dict` saved with `torch.save`",
        _weights(_plain_state_dict),
        2,
        ("not a poppy-survey checkpoint",),
    ),
    Case(
        "weights-other-arch",
        "a checkpoint naming an architecture this version lacks",
        _weights(_other_arch),
        2,
        ("architecture 'segformer_b5' is unknown",),
    ),
    Case(
        "weights-wrong-shapes",
        "weights that do not fit the architecture they name",
        _weights(_wrong_shapes),
        2,
        ("the weights do not fit architecture",),
    ),
    Case(
        "weights-other-bands",
        "a model for red, green, blue and NIR",
        _weights(lambda tmp: tiny_checkpoint(tmp / "model.pt", bands=("red", "green", "blue", "nir"))),
        2,
        ("the model expects bands red, green, blue, nir",),
    ),
    Case(
        "weights-landcover",
        "a land-cover pretraining checkpoint (no poppy class)",
        _weights(lambda tmp: tiny_checkpoint(tmp / "model.pt", classes=("background", "field", "road"))),
        2,
        ("have no 'poppy'",),
    ),
    Case(
        "weights-run-code",
        "a `.pt` crafted to run a command when loaded",
        _weights(_crafted),
        2,
        ("not a poppy-survey checkpoint or it is damaged",),
        check=_no_code_ran,
    ),
]


# ----------------------------------------------------------------------------------------------- flags, folders


def _empty_folder(tmp: Path, kit: Kit) -> list[str]:
    (tmp / "flight").mkdir()
    (tmp / "flight" / "notes.txt").write_text("no rasters here")
    return _infer(tmp, kit, tmp / "flight")


def _existing(tmp: Path, kit: Kit) -> list[str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "site.csv").write_text("plot_id\n")
    return _infer(tmp, kit, _good(tmp))


def _flag(*extra: str) -> Callable[[Path, Kit], list[str]]:
    return lambda tmp, kit: _infer(tmp, kit, _good(tmp), extra=extra)


CASES += [
    Case(
        "input-missing",
        "an input path that does not exist",
        lambda tmp, kit: _infer(tmp, kit, tmp / "site.tif"),
        2,
        ("no such file or folder",),
    ),
    Case("folder-no-raster", "a folder with no raster in it", _empty_folder, 2, ("folder holds no raster",)),
    Case(
        "outputs-exist",
        "outputs from an earlier run, no `--overwrite`",
        _existing,
        2,
        ("already exists", "--overwrite"),
    ),
    Case("threshold-high", "`--threshold 1.5`", _flag("--threshold", "1.5"), 2, ("--threshold 1.5", "between 0 and 1")),
    Case(
        "min-area-negative", "`--min-area-m2 -1`", _flag("--min-area-m2", "-1"), 2, ("--min-area-m2 -1.0", "0 or more")
    ),
    Case("tile-tiny", "`--tile 8`", _flag("--tile", "8"), 2, ("--tile 8: too small",)),
    Case(
        "overlap-large",
        "`--overlap 60` with 64-px tiles",
        _flag("--overlap", "60"),
        2,
        ("--overlap 60", "half the tile"),
    ),
    Case("batch-zero", "`--batch-size 0`", _flag("--batch-size", "0"), 2, ("--batch-size 0: must be at least 1",)),
    Case("formats-unknown", "`--formats shp`", _flag("--formats", "shp"), 2, ("--formats shp: unknown format",)),
    Case(
        "device-unknown",
        "`--device tpu`",
        lambda tmp, kit: [*_infer(tmp, kit, _good(tmp)), "--device", "tpu"],
        2,
        ("--device tpu: unknown device",),
    ),
]


# ------------------------------------------------------------------------------------------ train.py: labels

SITE = (500000.3, 3999998.9, 500001.2, 3999999.6)  # a 0.9 m x 0.7 m plot inside write_tif's default raster


def _data(tmp: Path, labels: dict[str, object] | None = None, rasters: tuple[str, ...] = ("site",)) -> list[str]:
    """A --data folder with rasters and, per name, a label file: bytes, or a GeoJSON dict; returns argv."""
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    for name in rasters:
        write_tif(data / f"{name}.tif")
    for name, content in (labels or {}).items():
        target = data / name
        target.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return ["--data", str(data), "--out", str(tmp / "out"), "--epochs", "1"]


def _fc(*geometries: dict, crs: str | None = "urn:ogc:def:crs:EPSG::32650") -> dict:
    doc: dict = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": g} for g in geometries],
    }
    if crs is not None:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    return doc


def _box(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _shapefile_without_crs(tmp: Path, kit: Kit) -> list[str]:
    import pyogrio
    import shapely

    argv = _data(tmp)
    geom = shapely.to_wkb(np.array([shapely.box(*SITE)], dtype=object))
    with warnings.catch_warnings():  # the missing CRS is the point of the case
        warnings.simplefilter("ignore", UserWarning)
        pyogrio.raw.write(tmp / "data" / "site.shp", geom, [], [], geometry_type="Polygon", crs=None)
    return argv


def _labelled_photo(tmp: Path, kit: Kit) -> list[str]:
    argv = _data(tmp, {"site.geojson": _fc(_box(*SITE))}, rasters=())
    cv2.imwrite(str(tmp / "data" / "site.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp / "data" / "site.png").rename(tmp / "data" / "site.tif")
    return argv


CASES += [
    Case(
        "train-no-folder",
        "`--data` folder that does not exist",
        lambda tmp, kit: ["--data", str(tmp / "nope"), "--out", str(tmp / "out")],
        2,
        ("--data", "nope: no such folder"),
        tool="train",
    ),
    Case(
        "train-unlabelled",
        "`--data` with `site.tif` but no `site.geojson`",
        lambda tmp, kit: _data(tmp),
        2,
        ("no orthomosaic with labels (no label file for site.tif)",),
        tool="train",
    ),
    Case(
        "train-labels-zero-byte",
        "a 0-byte `site.geojson`",
        lambda tmp, kit: _data(tmp, {"site.geojson": b""}),
        2,
        ("site.geojson: is empty (0 bytes)",),
        tool="train",
    ),
    Case(
        "train-labels-broken",
        "`site.geojson` that is not JSON (cut off mid-file)",
        lambda tmp, kit: _data(tmp, {"site.geojson": b'{"type": "FeatureCollection", "features": [{"type": "Fea'}),
        2,
        ("site.geojson: not a vector file GDAL can read",),
        tool="train",
    ),
    Case(
        "train-labels-no-crs",
        "a Shapefile of labels without its `.prj` (no CRS)",
        _shapefile_without_crs,
        2,
        ("site.shp: has no coordinate reference system", "Layer > Set CRS"),
        tool="train",
    ),
    Case(
        "train-labels-metres-as-degrees",
        "GeoJSON without a CRS (so WGS84) holding UTM metres",
        lambda tmp, kit: _data(tmp, {"site.geojson": _fc(_box(*SITE), crs=None)}),
        2,
        ("are not longitude/latitude",),
        tool="train",
    ),
    Case(
        "train-labels-points",
        "labels drawn as points",
        lambda tmp, kit: _data(tmp, {"site.geojson": _fc({"type": "Point", "coordinates": [500000.5, 3999999.0]})}),
        2,
        ("holds points or lines but no polygon", "draw each poppy plot as a polygon"),
        tool="train",
    ),
    Case(
        "train-labels-lines",
        "labels drawn as lines",
        lambda tmp, kit: _data(
            tmp,
            {
                "site.geojson": _fc(
                    {"type": "LineString", "coordinates": [[500000.3, 3999999.0], [500001.0, 3999999.2]]}
                )
            },
        ),
        2,
        ("holds points or lines but no polygon",),
        tool="train",
    ),
    Case(
        "train-labels-elsewhere",
        "label polygons 10 km away from the raster",
        lambda tmp, kit: _data(tmp, {"site.geojson": _fc(_box(510000, 4000000, 510001, 4000001))}),
        2,
        ("none of its 1 label polygons fall on the raster", "check that the labels belong"),
        tool="train",
    ),
    Case(
        "train-two-label-files",
        "`site.geojson` and `site.gpkg` both present",
        lambda tmp, kit: _data(tmp, {"site.geojson": _fc(_box(*SITE)), "site.gpkg": b"x"}),
        2,
        ("found several label files",),
        tool="train",
    ),
    Case(
        "train-photo-labelled",
        "a labelled PNG photo renamed `.tif`",
        _labelled_photo,
        2,
        ("is a photo (PNG",),
        tool="train",
    ),
]


# ------------------------------------------------------------------------------ train.py: reviewed outputs


def _reviewed(tmp: Path, *reviews: object, field: bool = True) -> list[str]:
    """A --reviewed folder: site.tif beside site.geojson holding one plot per review value (or no field)."""
    argv = _data(tmp)
    x0, y0, x1, y1 = SITE
    w = (x1 - x0) / max(1, len(reviews))
    feats = [
        {
            "type": "Feature",
            "properties": {"plot_id": f"P{i + 1:03d}", **({"review": r} if field else {})},
            "geometry": _box(x0 + i * w, y0, x0 + (i + 1) * w, y1),
        }
        for i, r in enumerate(reviews)
    ]
    doc = {**_fc(), "features": feats}
    (tmp / "data" / "site.geojson").write_text(json.dumps(doc))
    return ["--reviewed" if a == "--data" else a for a in argv]


CASES += [
    Case(
        "train-review-unknown",
        "`--reviewed` output whose `review` says `false alarm`",
        lambda tmp, kit: _reviewed(tmp, "confirmed", "false alarm"),
        2,
        ("feature 2 (P002): review 'false alarm' is not a verdict", "confirmed, rejected or added"),
        tool="train",
    ),
    Case(
        "train-review-no-field",
        "`--reviewed` output without a `review` field",
        lambda tmp, kit: _reviewed(tmp, "confirmed", field=False),
        2,
        ("has no review field", "add a text field named review"),
        tool="train",
    ),
    Case(
        "train-review-none",
        "`--reviewed` output where no plot is reviewed (`--unreviewed-as ignore`)",
        lambda tmp, kit: _reviewed(tmp, None, ""),
        2,
        ("no plot is reviewed (2 with an empty review)", "--unreviewed-as negative"),
        tool="train",
    ),
]
