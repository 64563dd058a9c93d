"""Inference runtimes (models/runtime.py): channels-last and ONNX Runtime give the default's results within
tolerance, are recorded in the summary, and fail with one clear line when misused or not installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from core.errors import InputError
from models import build_model
from models.export_onnx import main as export_main
from models.export_onnx import parse_args as export_args
from models.runtime import ChannelsLast, OnnxRuntimeNet, export_onnx, for_inference, runtime_name
from tests.test_infer import run, tiny_checkpoint, write_ortho

ARCH_ARGS = {"base_channels": 8, "depth": 2}
TILE = 64


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("fastunet", in_channels=3, num_classes=1, **ARCH_ARGS).eval()
    # Non-trivial batch-norm statistics, so a wrong fold or layout would show in the output.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("w") / "tiny.pt")


def _x(batch: int) -> torch.Tensor:
    return torch.rand(batch, 3, TILE, TILE, generator=torch.Generator().manual_seed(batch)) * 4 - 2


def test_plain_torch_is_the_model_itself(net: torch.nn.Module) -> None:
    assert for_inference(net) is net
    assert runtime_name(net) == "torch"


def test_channels_last_matches_contiguous(net: torch.nn.Module) -> None:
    wrapped = for_inference(build_model("fastunet", in_channels=3, num_classes=1, **ARCH_ARGS), channels_last=True)
    wrapped.net.load_state_dict(net.state_dict())
    wrapped.eval()
    assert isinstance(wrapped, ChannelsLast) and runtime_name(wrapped) == "torch-channels-last"
    x = _x(3)
    with torch.inference_mode():
        want, got = net(x), wrapped(x)
    assert got.shape == want.shape == (3, 1, TILE, TILE)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_onnxruntime_matches_torch_for_any_batch(net: torch.nn.Module) -> None:
    pytest.importorskip("onnxruntime")
    wrapped = for_inference(net, runtime="onnxruntime", tile=TILE)
    assert runtime_name(wrapped).startswith("onnxruntime ")
    assert wrapped.to("cpu") is wrapped and wrapped.eval() is wrapped
    for batch in (1, 3):  # the batch axis is dynamic: the last batch of a raster is often short
        x = _x(batch)
        with torch.inference_mode():
            want, got = net(x), wrapped(x)
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_onnx_file_refuses_another_tile_size(net: torch.nn.Module, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = export_onnx(net, tmp_path / "m.onnx", TILE)
    with pytest.raises(InputError, match=r"exported for 64 x 64 tiles, not 128 x 128.*--tile 128"):
        OnnxRuntimeNet(path, 128)
    ort_net = OnnxRuntimeNet(path, TILE)
    with pytest.raises(InputError, match="CPU only"):
        ort_net._apply(lambda t: t.to("meta"))  # what .to("cuda") does, without needing a GPU


def test_bad_choices_are_refused(net: torch.nn.Module) -> None:
    with pytest.raises(InputError, match="--runtime tensorrt: unknown; use one of torch, onnxruntime"):
        for_inference(net, runtime="tensorrt")
    with pytest.raises(InputError, match="--channels-last applies to --runtime torch"):
        for_inference(net, runtime="onnxruntime", channels_last=True)


def test_missing_onnxruntime_names_the_pip_command(net: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what Python does for a package that is not there
    with pytest.raises(InputError, match=r"'onnxruntime'.*not installed: pip install onnxruntime onnx onnxscript"):
        for_inference(net, runtime="onnxruntime", tile=TILE)


def test_export_command_writes_a_checked_file(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "tiny.onnx"
    assert export_main(export_args([str(ckpt), str(out)])) == 0
    line = capsys.readouterr().out
    assert out.is_file() and "for 64 x 64 tiles" in line and "largest logit difference" in line
    assert export_main(export_args([str(tmp_path / "missing.pt"), str(tmp_path / "x.onnx")])) == 2
    assert "missing.pt" in capsys.readouterr().err


def _prob(out: Path) -> np.ndarray:
    with rasterio.open(out / "site.prob.tif") as ds:
        return ds.read(1).astype(int)


@pytest.mark.parametrize(
    "flags", [["--channels-last"], ["--runtime", "onnxruntime"], ["--runtime", "onnxruntime", "--onnx", "FILE"]]
)
def test_infer_runtimes_agree_with_the_default(ckpt: Path, tmp_path: Path, flags: list[str]) -> None:
    if "onnxruntime" in flags:
        pytest.importorskip("onnxruntime")
    if "FILE" in flags:
        from models.checkpoint import load_checkpoint

        model, spec = load_checkpoint(ckpt)
        flags = [f if f != "FILE" else str(export_onnx(model, tmp_path / "m.onnx", spec.tile_size)) for f in flags]
    src = write_ortho(tmp_path / "site.tif", height=150, width=170, footprint=(10, 140, 0, 160))
    base, other = tmp_path / "base", tmp_path / "other"
    assert run([str(src), "--out", str(base), "--weights", str(ckpt), "--formats", "prob,geojson"]) == 0
    assert run([str(src), "--out", str(other), "--weights", str(ckpt), "--formats", "prob,geojson", *flags]) == 0
    # uint8 probabilities (254 steps): the last bits of a float may round a pixel to the next step, no further.
    assert np.abs(_prob(base) - _prob(other)).max() <= 1
    params = [json.loads((d / "site.summary.json").read_text())["parameters"] for d in (base, other)]
    assert "runtime" not in params[0]  # the default's summary is unchanged
    expected = "torch-channels-last" if "--channels-last" in flags else "onnxruntime "
    assert params[1]["runtime"].startswith(expected)


def test_infer_refuses_misused_runtime_flags(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = write_ortho(tmp_path / "site.tif")
    out = tmp_path / "out"
    assert run([str(src), "--out", str(out), "--weights", str(ckpt), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --onnx") and "only used with --runtime onnxruntime" in err and "\n" not in err
    args = [str(src), "--out", str(out), "--weights", str(ckpt), "--runtime", "onnxruntime"]
    assert run([*args, "--onnx", str(tmp_path / "none.onnx")]) == 2
    assert "no such file; write it with python -m models.export_onnx" in capsys.readouterr().err
    assert not out.exists()


def test_flight_frames_run_and_record_the_runtime(tmp_path: Path) -> None:
    from infer import main, parse_args
    from tests.test_frames import _flight

    folder = _flight(tmp_path, gps_error=False)
    for name in ("DJI_0003.JPG", "DJI_0004.JPG", "DJI_0005.JPG", "DJI_0006.JPG", "DJI_0008.JPG", "DJI_0009.JPG"):
        (folder / name).unlink()  # as tests/test_frames.py: two overlapping frames are enough
    weights = tiny_checkpoint(tmp_path / "all.pt", all_poppy=True)
    out = tmp_path / "out"
    args = [str(folder), "--out", str(out), "--weights", str(weights), "--quiet", "--device", "cpu", "--tile", "512"]
    assert main(parse_args([*args, "--channels-last"])) == 0
    summary = json.loads((out / "flight7.summary.json").read_text())
    assert summary["plots"]["count"] == 1 and summary["parameters"]["runtime"] == "torch-channels-last"
