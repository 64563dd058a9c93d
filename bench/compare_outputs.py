"""Before/after check for refactoring: the same outputs byte for byte, and the same validation numbers.

Checks out ``--old REV`` into a temporary ``git worktree``, then runs the SAME inputs through both trees, each with
its own code (``infer.py`` and ``bench/evaluate_model.py`` run as scripts from the tree, so they import that tree's
packages):

1. ``infer.py`` with every output format on the demo orthomosaic and on a few small generated scenes (one per
   CRS kind: UTM, EPSG:4326, EPSG:3857, so the geodesic code paths all run);
2. ``bench/evaluate_model.py --sweep --json`` of the shipped model on those generated scenes (the validation
   numbers: plot precision and recall, pixel IoU, false-positive area at every threshold).

The inputs (demo copy, scenes, weights copy) live in one shared folder, so paths recorded in the outputs are the
same for both trees. It then prints ``SAME`` or ``DIFF`` per file:

- byte identity for every file, except
- ``STEM.gpkg``: GDAL writes the write time into ``gpkg_contents.last_change``, and SQLite counts write
  transactions in its file header (bytes 24-27 and 92-95), a count that varies from run to run of the same code
  (measured: 12, 13 or 14 for the same scene); both are blanked (same length, so every other byte is compared in
  place);
- ``STEM.summary.json``: compared without ``created_utc`` and ``timings_s`` (wall-clock values);
- ``STEM.report.html``: the page shows the run's creation date-time, blanked before comparing;
- the validation JSON: byte identity (it holds no time).

    .venv/bin/python bench/compare_outputs.py --old main
    .venv/bin/python bench/compare_outputs.py --old HEAD~3 --keep /tmp/cmp   # keep the outputs to look at

Exit code 0 when every file is SAME, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Scene kinds: (name prefix, --crs, --stage, seed). Small (768 px at 3 cm) so the whole check takes minutes.
SCENES = (("utm", "utm", "flowering", 101), ("geo", "4326", "vegetative", 202), ("merc", "3857", "capsule", 303))
SCENE_SIZE = 768
_GPKG_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_SUMMARY_VOLATILE = ("created_utc", "timings_s")
_ISO_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\+00:00|Z)")


def _run(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} (in {cwd}) failed with {res.returncode}:\n{res.stdout}{res.stderr}")


def make_inputs(work: Path) -> tuple[list[Path], Path, Path]:
    """The shared inputs: a copy of the demo, generated scenes in one folder, a copy of the shipped weights."""
    inputs = work / "inputs"
    scenes = inputs / "scenes"
    scenes.mkdir(parents=True)
    demo = inputs / "demo_ortho.tif"
    shutil.copy(ROOT / "samples" / "demo_ortho.tif", demo)
    weights = inputs / "poppy_default.pt"
    shutil.copy(ROOT / "models" / "weights" / "poppy_default.pt", weights)
    for prefix, crs, stage, seed in SCENES:
        _run(
            [sys.executable, "-m", "datasets.synthetic", "--out", str(scenes), "--count", "1", "--seed", str(seed),
             "--size", str(SCENE_SIZE), "--gsd", "0.03", "--crs", crs, "--stage", stage, "--prefix", prefix],
            ROOT,
        )  # fmt: skip
    rasters = [demo, *sorted(scenes.glob("*.tif"))]
    return rasters, scenes, weights


def run_tree(tree: Path, rasters: list[Path], scenes: Path, weights: Path, out: Path) -> None:
    """Every output of ``infer.py`` and the validation report, made by the code in ``tree``."""
    out.mkdir(parents=True)
    _run(
        [sys.executable, "infer.py", *map(str, rasters), "--out", str(out), "--weights", str(weights), "--quiet",
         "--device", "cpu"],
        tree,
    )  # fmt: skip
    _run(
        [sys.executable, "bench/evaluate_model.py", "--weights", str(weights), "--data", str(scenes), "--sweep",
         "--json", str(out / "validation.json")],
        tree,
    )  # fmt: skip


def _gpkg_stable(data: bytes) -> bytes:
    """A GeoPackage's bytes with the write time and SQLite's write-transaction counter blanked."""
    data = bytearray(_GPKG_TIME.sub(b"T" * 24, data))
    data[24:28] = data[92:96] = b"\0\0\0\0"
    return bytes(data)


def same(old: Path, new: Path) -> tuple[bool, str]:
    """Whether two output files match, and how they were compared."""
    a, b = old.read_bytes(), new.read_bytes()
    if old.name.endswith(".gpkg"):
        return _gpkg_stable(a) == _gpkg_stable(b), "bytes, last_change and SQLite change counter blanked"
    if old.name.endswith(".report.html"):  # the page says when it was made (the summary's created_utc)
        return _ISO_TIME.sub(b"T", a) == _ISO_TIME.sub(b"T", b), "bytes, the creation date-time blanked"
    if old.name.endswith(".summary.json"):
        ja, jb = json.loads(a), json.loads(b)
        for key in _SUMMARY_VOLATILE:
            ja.pop(key, None)
            jb.pop(key, None)
        return ja == jb, f"JSON without {', '.join(_SUMMARY_VOLATILE)}"
    return a == b, "bytes"


def _files(folder: Path) -> list[str]:
    """Every file below ``folder``, as a path relative to it (``STEM.chips/`` is a folder of chips)."""
    return sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="git revision to compare the working tree with (e.g. main)")
    p.add_argument("--keep", type=Path, default=None, help="keep inputs and outputs in this (new) folder")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="poppy-compare-")) if args.keep is None else args.keep
    if args.keep is not None:
        work.mkdir(parents=True, exist_ok=False)
    old_tree = work / "old-tree"
    _run(["git", "worktree", "add", "--detach", str(old_tree), args.old], ROOT)
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=old_tree, capture_output=True, text=True)
        print(f"old: {args.old} ({rev.stdout.strip()}) in {old_tree}; new: the working tree {ROOT}")
        rasters, scenes, weights = make_inputs(work)
        run_tree(old_tree, rasters, scenes, weights, work / "out-old")
        run_tree(ROOT, rasters, scenes, weights, work / "out-new")
    finally:
        _run(["git", "worktree", "remove", "--force", str(old_tree)], ROOT)

    old_files, new_files = _files(work / "out-old"), _files(work / "out-new")
    ok = old_files == new_files
    if not ok:
        print(f"DIFF file lists: only old {sorted(set(old_files) - set(new_files))}, "
              f"only new {sorted(set(new_files) - set(old_files))}")  # fmt: skip
    for name in sorted(set(old_files) & set(new_files)):
        match, how = same(work / "out-old" / name, work / "out-new" / name)
        ok &= match
        print(f"{'SAME' if match else 'DIFF'}  {name:<40} ({how})")
    if args.keep is None and ok:
        shutil.rmtree(work)
        where = "outputs removed (--keep DIR keeps them)"
    else:
        where = f"outputs in {work}"
    print(f"{'all SAME' if ok else 'some DIFF'}: {len(old_files)} files; {where}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
