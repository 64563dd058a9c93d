"""Self-describing checkpoints: one file holds the weights and everything inference needs.

A checkpoint is a plain dictionary saved with :func:`torch.save` and loaded with ``weights_only=True``, so a
weights file cannot run code when it is opened. Besides the ``state_dict`` it records the architecture and its
arguments, the input bands and their order, the normalisation, the ground sample distance (GSD) the model was
trained at, the default threshold, the class names, the training arguments, a hash of the training data list,
validation metrics and a format version. Inference reads nothing else.

Training runs can store more (optimiser, scheduler, RNG state) under ``extra``; inference ignores it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import InputError
from core.files import file_sha256, write_aside
from models.plotnet import JudgeSpec
from models.registry import build_model, list_models

__all__ = [
    "FORMAT_VERSION",
    "ModelSpec",
    "TransferReport",
    "data_hash",
    "default_weights_path",
    "load_checkpoint",
    "load_judge",
    "load_pretrained_into",
    "load_training_state",
    "normalise",
    "poppy_probability",
    "read_train_args",
    "save_checkpoint",
]

FORMAT_VERSION = 1
_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = "poppy_default.pt"


@dataclass(frozen=True)
class ModelSpec:
    """Everything inference needs besides the weights.

    Attributes:
        arch: Registered network name (see :func:`models.registry.list_models`).
        arch_args: Keyword arguments the network was built with (besides in_channels/num_classes).
        bands: Input band names in order, e.g. ``("red", "green", "blue")``.
        mean: Per-band mean, applied to values scaled to [0, 1].
        std: Per-band standard deviation, likewise.
        gsd_m: Ground sample distance the model was trained at, metres per pixel; inputs are resampled to it.
        threshold: Default probability threshold for the poppy class, chosen on validation.
        classes: Class names; ``("background", "poppy")`` for the binary detector (one logit).
        tile_size: Suggested inference tile, in model pixels.
        name: Human-readable model name written into outputs.
        train_args: The arguments the model was trained with.
        data_hash: SHA-256 over the training data list (see :func:`data_hash`).
        metrics: Validation metrics of this checkpoint.
        format_version: Checkpoint format version.
        sha256: SHA-256 of the file it was loaded from (empty when not loaded from a file).
    """

    arch: str
    arch_args: dict[str, Any] = field(default_factory=dict)
    bands: tuple[str, ...] = ("red", "green", "blue")
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    gsd_m: float = 0.03
    threshold: float = 0.5
    classes: tuple[str, ...] = ("background", "poppy")
    tile_size: int = 512
    name: str = "poppy-model"
    train_args: dict[str, Any] = field(default_factory=dict)
    data_hash: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    sha256: str = ""

    @property
    def num_outputs(self) -> int:
        """Output channels of the network: 1 logit for a binary detector, else one per class."""
        return 1 if len(self.classes) == 2 else len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain types (lists for tuples), ready for a checkpoint or a JSON record."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        d.pop("sha256")
        return d


def default_weights_path() -> Path:
    """Where the shipped default model lives."""
    return _WEIGHTS_DIR / DEFAULT_WEIGHTS


def data_hash(paths: Iterable[str | Path]) -> str:
    """SHA-256 over a training data list: file names, sizes and modification-independent content digests.

    Hashing each file's first and last MiB plus its size (not its full content) keeps this fast for
    multi-gigabyte orthomosaics while still changing whenever a file is replaced.
    """
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0".encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read())
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """Convert values to the types ``torch.load(weights_only=True)`` accepts (Paths and tuples included)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    return str(value)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec,
    *,
    extra: dict | None = None,
    judge: tuple[nn.Module, JudgeSpec] | None = None,
) -> None:
    """Write a checkpoint atomically (to a temporary file beside it, then renamed).

    Args:
        path: Destination file.
        model: The network; its ``state_dict`` is saved (moved to CPU).
        spec: What inference needs.
        extra: Optional training state (optimiser, scheduler, RNG, epoch) for ``--resume``; plain types and
            tensors only.
        judge: Optional second stage (:mod:`models.plotnet`): its network and spec, stored under ``"judge"``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"poppy_survey_checkpoint": True, **_plain(spec.to_dict()), "state_dict": state}
    if judge is not None:
        judge_model, judge_spec = judge
        judge_state = {k: v.detach().cpu() for k, v in judge_model.state_dict().items()}
        payload["judge"] = {**_plain(judge_spec.to_dict()), "state_dict": judge_state}
    if extra is not None:
        payload["extra"] = _plain(extra) if not isinstance(extra, dict) else extra
    with write_aside(path) as tmp:
        torch.save(payload, tmp)


def _read(path: Path, map_location: str | torch.device) -> dict:
    if not path.is_file():
        raise InputError(f"weights {path}: no such file; give a checkpoint written by train.py")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        raise InputError(
            f"weights {path}: not a poppy-survey checkpoint or it is damaged ({type(exc).__name__}); "
            "give a .pt file written by train.py"
        ) from exc
    if not isinstance(payload, dict) or not payload.get("poppy_survey_checkpoint"):
        raise InputError(f"weights {path}: not a poppy-survey checkpoint; give a .pt file written by train.py")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            f"weights {path}: checkpoint format {version} is newer than this software reads "
            f"({FORMAT_VERSION}); update poppy-survey"
        )
    return payload


def _resolve(path: str | Path | None) -> Path:
    if path is None or str(path) == "default":
        p = default_weights_path()
        if not p.is_file():
            raise InputError(
                f"the default model {p} is missing; restore it from the repository (git checkout -- {p.name}) "
                "or pass --weights"
            )
        return p
    return Path(path)


def load_checkpoint(
    path: str | Path | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelSpec]:
    """Load a checkpoint and rebuild its network, in eval mode.

    Args:
        path: A checkpoint file; ``None`` or ``"default"`` for the shipped default model.
        map_location: Device to load the weights to.

    Returns:
        ``(model, spec)``.

    Raises:
        InputError: If the file is missing, not a checkpoint, from a newer format, names an unknown
            architecture, or its weights do not fit the architecture it names.
    """
    p = _resolve(path)
    payload = _read(p, map_location)
    names = {f.name for f in dataclasses.fields(ModelSpec)} - {"sha256"}
    missing = sorted(n for n in names if n not in payload and n not in ("metrics", "train_args", "data_hash"))
    if missing:
        raise InputError(f"weights {p}: checkpoint lacks {', '.join(missing)}; re-export it with train.py")
    kwargs = {n: payload[n] for n in names if n in payload}
    for n in ("bands", "mean", "std", "classes"):
        kwargs[n] = tuple(kwargs[n])
    spec = ModelSpec(**kwargs, sha256=file_sha256(p))
    if spec.arch not in list_models():
        raise InputError(
            f"weights {p}: architecture {spec.arch!r} is unknown to this version; known: {', '.join(list_models())}"
        )
    if len(spec.mean) != len(spec.bands) or len(spec.std) != len(spec.bands):
        raise InputError(f"weights {p}: normalisation has {len(spec.mean)} values for {len(spec.bands)} bands")
    model = build_model(spec.arch, in_channels=len(spec.bands), num_classes=spec.num_outputs, **spec.arch_args)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise InputError(
            f"weights {p}: the weights do not fit architecture {spec.arch!r} with {spec.arch_args} ({first}); "
            "the checkpoint is damaged or was edited"
        ) from exc
    model.to(map_location).eval()
    return model, spec


@dataclass(frozen=True)
class TransferReport:
    """What :func:`load_pretrained_into` copied.

    Attributes:
        source: Where the weights came from (a path, or ``"state_dict"``).
        copied: Names of the model's tensors overwritten with the source's.
        reshaped: ``(name, source shape, model shape)`` of tensors left as initialised because the shapes differ
            (a classification head with another number of classes).
        missing: Names of the model's tensors the source lacks (left as initialised).
        unexpected: Names of the source's tensors the model lacks (not used).
    """

    source: str
    copied: tuple[str, ...]
    reshaped: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    def summary(self) -> str:
        """One line for the log: counts, and the tensors left as initialised."""
        total = len(self.copied) + len(self.reshaped) + len(self.missing)
        kept = [f"{n} {tuple(a)}->{tuple(b)}" for n, a, b in self.reshaped] + list(self.missing)
        tail = f"; initialised afresh: {', '.join(kept)}" if kept else ""
        return f"transferred {len(self.copied)} of {total} tensors from {self.source}{tail}"


def load_pretrained_into(
    model: nn.Module,
    checkpoint: str | Path | Mapping[str, torch.Tensor] | nn.Module | None,
    *,
    strict: bool = False,
) -> TransferReport:
    """Copy every tensor of a checkpoint whose name and shape match into ``model``; leave the rest as they are.

    This is how an encoder (and whatever else transfers: decoder, batch-norm statistics) pretrained on land cover
    initialises the poppy model: the same network with a 1-logit head instead of a K-class one, so only the head
    differs in shape and starts afresh.

    Args:
        model: The network to initialise (modified in place).
        checkpoint: A checkpoint path (``None``/``"default"`` for the shipped model), a ``state_dict`` or a module.
        strict: Raise unless every tensor of ``model`` is copied.

    Returns:
        What was copied and what was not.

    Raises:
        InputError: If the checkpoint cannot be read, nothing matches (another architecture), or ``strict`` and
            something does not.
    """
    if isinstance(checkpoint, nn.Module):
        source, src = "module", checkpoint.state_dict()
    elif isinstance(checkpoint, Mapping):
        source, src = "state_dict", dict(checkpoint)
    else:
        p = _resolve(checkpoint)
        source, src = str(p), _read(p, "cpu")["state_dict"]
    own = model.state_dict()
    copied, reshaped, missing = [], [], []
    update = {}
    for name, tensor in own.items():
        if name not in src:
            missing.append(name)
        elif tuple(src[name].shape) != tuple(tensor.shape):
            reshaped.append((name, tuple(src[name].shape), tuple(tensor.shape)))
        else:
            update[name] = src[name].to(dtype=tensor.dtype)
            copied.append(name)
    report = TransferReport(
        source, tuple(copied), tuple(reshaped), tuple(missing), tuple(n for n in src if n not in own)
    )
    if not any(own[n].ndim > 0 for n in copied):  # scalars (batch-norm step counters) match any network
        raise InputError(
            f"weights {source}: no tensor matches the network by name and shape; pretrain with the same --arch "
            "and --arch-args as the model it should initialise"
        )
    if strict and (reshaped or missing):
        raise InputError(f"weights {source}: not every tensor transfers ({report.summary()})")
    model.load_state_dict(update, strict=False)
    return report


def load_judge(
    path: str | Path | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, JudgeSpec] | None:
    """The second stage stored in a checkpoint, in eval mode, or None for a one-stage checkpoint.

    Args:
        path: A checkpoint file; ``None`` or ``"default"`` for the shipped default model.
        map_location: Device to load the weights to.

    Raises:
        InputError: If the file cannot be read, or its judge is damaged or does not fit its network.
    """
    p = _resolve(path)
    stored = _read(p, map_location).get("judge")
    if stored is None:
        return None
    if not isinstance(stored, dict) or "state_dict" not in stored:
        raise InputError(f"weights {p}: the second-stage judge is damaged; retrain it with train.py --judge")
    spec = JudgeSpec.from_dict(stored)
    model = spec.build()
    try:
        model.load_state_dict(stored["state_dict"])
    except RuntimeError as exc:
        raise InputError(
            f"weights {p}: the judge's weights do not fit {spec.arch!r} with {spec.arch_args}; the checkpoint is "
            "damaged or was edited"
        ) from exc
    return model.to(map_location).eval(), spec


def read_train_args(path: str | Path) -> dict[str, Any]:
    """The training settings a checkpoint records (``train_args``; ``{}`` when it records none)."""
    args = _read(Path(path), "cpu").get("train_args")
    return dict(args) if isinstance(args, dict) else {}


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The ``extra`` training state saved with a checkpoint (for ``--resume``), or ``{}``."""
    return _read(Path(path), map_location).get("extra", {})


def normalise(x: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Normalise a float batch ``[B, C, H, W]`` with values in [0, 1] by the model's mean and std."""
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def poppy_probability(logits: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Probability of the poppy class, ``[B, H, W]`` in [0, 1], from the network's logits."""
    if spec.num_outputs == 1:
        return torch.sigmoid(logits[:, 0].float())
    return torch.softmax(logits.float(), dim=1)[:, spec.classes.index("poppy")]
