"""A bounded fuzz run: mutated GeoTIFF bytes through infer.py, mutated GeoJSON through train.py's label checks.

Every case must end in a clean error (exit 2, one line) or a valid result (exit 0), never an internal error,
a traceback or a hang (pytest-timeout). The longer run is ``bench/fuzz_inputs.py``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from core.errors import InputError
from datasets.labels import read_labels
from datasets.training_folder import check_training_folder
from infer import main, parse_args
from tests.bad_input_cases import tiny_checkpoint, write_tif
from tests.fuzz_cases import labelled_folder, mutate

TIFF_SEEDS = range(40)
GEOJSON_SEEDS = range(60)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    d = tmp_path_factory.mktemp("fuzz")
    tif = write_tif(d / "seed.tif", height=96, width=80, tiled=True, blockxsize=32, blockysize=32)
    return tiny_checkpoint(d / "tiny.pt"), tif.read_bytes()


@pytest.mark.parametrize("seed", TIFF_SEEDS)
def test_mutated_geotiff(seed: int, kit: tuple[Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights, data = kit
    src = tmp_path / "site.tif"
    src.write_bytes(mutate(data, seed))
    out = tmp_path / "out"
    code = main(parse_args([str(src), "--out", str(out), "--weights", str(weights), "--quiet", "--device", "cpu"]))
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1, err
        assert not out.exists() or not any(out.iterdir())
    else:
        assert (out / "site.summary.json").is_file()


@pytest.mark.parametrize("seed", GEOJSON_SEEDS)
def test_mutated_geojson_labels(seed: int, tmp_path: Path) -> None:
    data = labelled_folder(tmp_path / "data", seed)
    try:
        check_training_folder(data)
    except InputError as exc:
        assert "site.geojson" in str(exc) or "site.tif" in str(exc), str(exc)  # names the file at fault


def test_unclosed_ring_is_closed_not_a_crash(tmp_path: Path) -> None:
    # Found by the fuzz run (seed 47): GEOS refused the whole file with a traceback.
    path = tmp_path / "site.geojson"
    ring = [[500000.3, 3999998.9], [500001.2, 3999998.9], [500001.2, 3999999.6]]  # last point != first
    doc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}],
    }
    path.write_text(
        json.dumps(doc).replace(
            '"FeatureCollection"', '"FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32650"}}'
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # GDAL's own note on the unclosed ring
        labels = read_labels(path, "EPSG:32650")
    assert len(labels) == 1 and labels.geometries[0].area == pytest.approx(0.9 * 0.7 / 2)
