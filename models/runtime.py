"""How a loaded network runs at inference: PyTorch as is, PyTorch in channels-last, or ONNX Runtime.

Each choice is a wrapper that is still an ``nn.Module`` taking a normalised ``float32`` batch ``[B, 3, H, W]`` and
returning logits ``[B, C, H, W]``, so :func:`detect.predict.predict_raster` runs any of them unchanged. The
default (plain PyTorch, contiguous tensors) is what every test and every byte-identity check runs; the others are
speed levers measured with ``bench/infer.py`` and kept as options:

- ``channels_last``: weights and input in NHWC memory format, where oneDNN's convolution kernels run faster on
  narrow layers (``bench/flops.py`` measures both formats on this network's shapes). Same arithmetic, a
  different summation order: probabilities agree to about 1e-6, not bit for bit.
- ``onnxruntime``: the network exported to ONNX (in memory, at the run's tile size, batch dynamic) and run by ONNX
  Runtime's CPU provider. An optional dependency (``pip install onnxruntime onnx onnxscript``); equal to
  PyTorch's output within 1e-4 in logits (tested).

Every wrapper carries a ``runtime`` string (``torch``, ``torch-channels-last``, ``onnxruntime X.Y.Z``) that the
pipeline records in the summary and in the resume record: an interrupted run is continued only by the same runtime.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import InputError

__all__ = [
    "RUNTIMES",
    "ChannelsLast",
    "OnnxRuntimeNet",
    "export_onnx",
    "for_inference",
    "runtime_name",
]

RUNTIMES = ("torch", "onnxruntime")
_ORT_PIP = "pip install onnxruntime onnx onnxscript"
ONNX_OPSET = 18  # the opset torch's exporter writes natively; ONNX Runtime 1.16+ runs it


def runtime_name(model: nn.Module) -> str:
    """What runs ``model``: the wrapper's ``runtime`` string, ``torch`` for a plain module."""
    return str(getattr(model, "runtime", "torch"))


def _optional(module: str, what: str) -> Any:
    """Import an optional dependency, or say which pip command installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"{what} needs the Python package {module!r}, which is not installed: {_ORT_PIP}") from exc


class ChannelsLast(nn.Module):
    """Runs ``net`` with its weights and input in channels-last (NHWC) memory format."""

    runtime = "torch-channels-last"

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))


def export_onnx(model: nn.Module, path: str | Path, tile: int, *, in_channels: int = 3) -> Path:
    """Export ``model`` to an ONNX file for ``tile x tile`` inputs and any batch size.

    Args:
        model: The network (put in eval mode; its weights are not changed).
        path: Where to write the ``.onnx`` file.
        tile: Tile side in pixels the file will accept (height and width are fixed in the graph).
        in_channels: Input bands.

    Returns:
        ``path``.

    Raises:
        InputError: If ``onnx``/``onnxscript`` (the exporter's dependencies) are missing.
    """
    _optional("onnx", "exporting to ONNX")
    _optional("onnxscript", "exporting to ONNX")
    path = Path(path)
    model = model.eval()
    x = torch.rand(2, in_channels, tile, tile)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes and progress are not the user's concern
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            opset_version=ONNX_OPSET,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    return path


class OnnxRuntimeNet(nn.Module):
    """An ONNX file run by ONNX Runtime's CPU provider, behind the ``nn.Module`` interface predict uses.

    Args:
        onnx_path: The exported network (from :func:`export_onnx`).
        tile: The tile side it was exported for (inputs of any other size are refused with the fix).
        threads: Intra-op threads; ``None`` takes torch's (``torch.get_num_threads()``), so both runtimes use
            the same cores.
    """

    def __init__(self, onnx_path: str | Path, tile: int, threads: int | None = None) -> None:
        super().__init__()
        ort = _optional("onnxruntime", "--runtime onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.tile = tile
        fixed = [d for d in inp.shape[-2:] if isinstance(d, int)]
        if fixed and fixed != [tile, tile]:
            raise InputError(
                f"{onnx_path}: exported for {' x '.join(map(str, inp.shape[-2:]))} tiles, not {tile} x {tile}: "
                f"export it again with python -m models.export_onnx CKPT OUT.onnx --tile {tile}"
            )
        self.runtime = f"onnxruntime {ort.__version__}"

    def _apply(self, fn: Any, recurse: bool = True) -> OnnxRuntimeNet:  # .to(), .cuda(), .float() ...
        probe = fn(torch.zeros(1))
        if probe.device.type != "cpu":
            raise InputError(f"--runtime onnxruntime runs on the CPU only, not on {probe.device}: use --device cpu")
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.tile, self.tile):
            raise InputError(
                f"the ONNX network was exported for {self.tile} x {self.tile} tiles, got {x.shape[-2]} x "
                f"{x.shape[-1]}: export it again with --tile {x.shape[-1]}"
            )
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)})
        return torch.from_numpy(out[0])


def for_inference(
    model: nn.Module,
    *,
    runtime: str = "torch",
    channels_last: bool = False,
    tile: int = 512,
    in_channels: int = 3,
    onnx_path: str | Path | None = None,
) -> nn.Module:
    """Wrap a loaded network for the chosen runtime (``torch`` with no option returns ``model`` itself).

    Args:
        model: The network from :func:`models.checkpoint.load_checkpoint`, in eval mode.
        runtime: ``torch`` or ``onnxruntime``.
        channels_last: With ``torch``: run in channels-last memory format.
        tile: Tile side in model pixels (the ONNX graph is exported for it).
        in_channels: Input bands.
        onnx_path: An ONNX file exported earlier (``python -m models.export_onnx``); ``None`` exports one to a
            temporary file (a few seconds), deleted once the session has read it.

    Raises:
        InputError: For an unknown runtime, channels-last with ONNX Runtime, or a missing optional package.
    """
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime {runtime}: unknown; use one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return ChannelsLast(model) if channels_last else model
    if channels_last:
        raise InputError("--channels-last applies to --runtime torch; ONNX Runtime chooses its own layout")
    _optional("onnxruntime", "--runtime onnxruntime")
    if onnx_path is not None:
        return OnnxRuntimeNet(onnx_path, tile)
    fd, name = tempfile.mkstemp(suffix=".onnx")
    os.close(fd)
    try:
        export_onnx(model, name, tile, in_channels=in_channels)
        return OnnxRuntimeNet(name, tile)
    finally:
        Path(name).unlink(missing_ok=True)
        Path(name + ".data").unlink(missing_ok=True)  # external weights, if the exporter split them out
