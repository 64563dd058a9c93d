"""The catalogue of bad and awkward inputs: what a user may hand ``infer.py`` or ``train.py``, and what must happen.

Each :class:`Case` builds its files in a temporary folder and returns the command line; the outcome is the exit
code and words the one-line message must contain. ``tests/test_bad_inputs.py`` runs every case;
``tools/bad_input_table.py`` runs them too and writes ``docs/bad_inputs.md`` from the messages it got, so the
table shows what the software really says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

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
    """

    name: str
    what: str
    build: Callable[[Path, Kit], list[str]]
    code: int
    words: tuple[str, ...]
    tool: str = "infer"
    setup: Callable[[object], None] | None = None
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------- builders


def tiny_checkpoint(path: Path, **spec_kw: object) -> Path:
    """A fastunet with random weights (seed 0) and a 64-px tile, saved as a real checkpoint."""
    torch.manual_seed(0)
    bands = spec_kw.pop("bands", ("red", "green", "blue"))
    model = build_model("fastunet", in_channels=len(bands), num_classes=1, **ARCH_ARGS)
    kw: dict = {"arch": "fastunet", "arch_args": ARCH_ARGS, "gsd_m": GSD, "tile_size": 64, "threshold": 0.5}
    kw.update(name="tiny-test", bands=tuple(bands), mean=(0.5,) * len(bands), std=(0.25,) * len(bands))
    kw.update(spec_kw)
    save_checkpoint(path, model, ModelSpec(**kw))
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
