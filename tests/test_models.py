"""Networks, registry and checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch

from core.errors import InputError
from models import build_model, list_models
from models.checkpoint import (
    ModelSpec,
    data_hash,
    load_checkpoint,
    load_pretrained_into,
    load_training_state,
    normalise,
    poppy_probability,
    save_checkpoint,
)

# Small widths keep the forward/backward checks fast on a 2-core CI machine.
SMALL_ARGS = {
    "fastunet": {"base_channels": 8, "depth": 3},
    "unet_resnet18": {"decoder_channels": (32, 16, 16, 8, 8)},
    "unet_resnet34": {"decoder_channels": (32, 16, 16, 8, 8)},
}


def test_registry_lists_every_network() -> None:
    assert set(list_models()) == {"fastunet", "unet_resnet18", "unet_resnet34"}


def test_unknown_name_lists_valid_choices() -> None:
    with pytest.raises(InputError, match=r"unknown model 'segformer'; choose one of: fastunet, unet_resnet18"):
        build_model("segformer")


@pytest.mark.parametrize("name", sorted(SMALL_ARGS))
@pytest.mark.parametrize(("height", "width"), [(64, 64), (37, 53)])
def test_forward_backward_any_size(name: str, height: int, width: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, num_classes=2, **SMALL_ARGS[name])
    x = torch.rand(2, 3, height, width, requires_grad=True)
    y = model(x)
    assert y.shape == (2, 2, height, width)
    y.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_extra_input_bands() -> None:
    model = build_model("unet_resnet18", in_channels=4, num_classes=1, **SMALL_ARGS["unet_resnet18"]).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 4, 32, 32)).shape == (1, 1, 32, 32)


def test_missing_encoder_weights_file(tmp_path) -> None:
    with pytest.raises(InputError, match=r"encoder weights .*nope.pth: no such file"):
        build_model("unet_resnet18", encoder_weights=str(tmp_path / "nope.pth"))


def test_local_encoder_weights_are_loaded(tmp_path) -> None:
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(resnet.conv1.weight, 0.125)
    path = tmp_path / "r18.pth"
    torch.save(resnet.state_dict(), path)
    model = build_model("unet_resnet18", encoder_weights=str(path), **SMALL_ARGS["unet_resnet18"])
    assert torch.all(model.net.stem[0].weight == 0.125)


def _spec(**kw) -> ModelSpec:
    base = dict(arch="fastunet", arch_args=SMALL_ARGS["fastunet"], gsd_m=0.025, threshold=0.4, name="t")
    base.update(kw)
    return ModelSpec(**base)


def test_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    spec = _spec(train_args={"epochs": 3, "out": tmp_path}, metrics={"plot_f1": 0.9}, data_hash="abc")
    model = build_model(spec.arch, num_classes=spec.num_outputs, **spec.arch_args).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, spec, extra={"epoch": 3, "rng": torch.get_rng_state()})
    loaded, spec2 = load_checkpoint(path)
    assert not loaded.training
    assert spec2.gsd_m == 0.025 and spec2.threshold == 0.4 and spec2.classes == ("background", "poppy")
    assert spec2.train_args == {"epochs": 3, "out": str(tmp_path)}
    assert spec2.metrics == {"plot_f1": 0.9} and spec2.data_hash == "abc"
    assert len(spec2.sha256) == 64
    x = torch.rand(1, 3, 40, 40)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x))
    assert load_training_state(path)["epoch"] == 3
    assert not list(tmp_path.glob("*.tmp")), "the temporary file must be renamed away"


def test_checkpoint_refuses_code(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"poppy_survey_checkpoint": True, "x": Evil()}, f, protocol=2)
    with pytest.raises(InputError, match="not a poppy-survey checkpoint or it is damaged"):
        load_checkpoint(path)


def test_checkpoint_mismatch_is_explained(tmp_path) -> None:
    spec = _spec()
    model = build_model("fastunet", base_channels=8, depth=3)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, spec)
    payload = torch.load(path, weights_only=True)
    payload["arch_args"] = {"base_channels": 16, "depth": 3}
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"weights do not fit architecture 'fastunet'"):
        load_checkpoint(path)
    payload["arch"] = "mystery"
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"architecture 'mystery' is unknown.*known: fastunet"):
        load_checkpoint(path)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(InputError, match="format 99 is newer"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path) -> None:
    with pytest.raises(InputError, match=r"weights .*none.pt: no such file"):
        load_checkpoint(tmp_path / "none.pt")


def test_normalise_and_probability() -> None:
    spec = _spec(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.full((1, 3, 2, 2), 0.75)
    assert torch.allclose(normalise(x, spec), torch.ones_like(x))
    logits = torch.zeros(1, 1, 2, 2)
    assert torch.allclose(poppy_probability(logits, spec), torch.full((1, 2, 2), 0.5))
    multi = _spec(classes=("background", "road", "poppy"))
    logits3 = torch.tensor([0.0, 0.0, 10.0]).view(1, 3, 1, 1)
    assert float(poppy_probability(logits3, multi)) > 0.99


def test_data_hash_changes_with_content(tmp_path) -> None:
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    a.write_bytes(b"1" * 10)
    b.write_bytes(b"2" * 10)
    h1 = data_hash([a, b])
    assert h1 == data_hash([b, a])
    b.write_bytes(b"3" * 10)
    assert data_hash([a, b]) != h1


def test_shipped_default_model_loads_and_describes_itself() -> None:
    """The committed default model must load with nothing but its file, and carry what inference needs."""
    from models.checkpoint import default_weights_path

    if not default_weights_path().is_file():
        pytest.fail(f"{default_weights_path()} is missing: the repository must ship a default model")
    model, spec = load_checkpoint(None)
    assert default_weights_path().stat().st_size < 25 * 2**20
    assert spec.classes == ("background", "poppy") and spec.bands == ("red", "green", "blue")
    assert 0.01 <= spec.gsd_m <= 0.06 and 0.0 < spec.threshold < 1.0
    assert spec.metrics and spec.train_args and len(spec.data_hash) == 64
    with torch.inference_mode():
        prob = poppy_probability(model(torch.rand(1, 3, 64, 64)), spec)
    assert prob.shape == (1, 64, 64) and float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0


def test_fastunet_aux_head_trains_on_every_pixel_and_costs_nothing_at_inference(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("fastunet", base_channels=4, depth=2, aux_classes=5)
    x = torch.randn(2, 3, 32, 32)
    model.train()
    assert model(x).shape == (2, 6, 32, 32)  # poppy logit, then five land-cover logits
    model.eval()
    plain = build_model("fastunet", base_channels=4, depth=2)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "aux_head" not in k})
    plain.eval()
    assert torch.equal(model(x), plain(x))  # eval: the poppy logits alone, the same as without the head
    # a checkpoint with the head round-trips; a plain one initialises it (the head starts afresh)
    spec = ModelSpec(arch="fastunet", arch_args={"base_channels": 4, "depth": 2, "aux_classes": 5})
    save_checkpoint(tmp_path / "aux.pt", model, spec)
    loaded, _ = load_checkpoint(tmp_path / "aux.pt")
    assert torch.equal(loaded(x), model(x))
    fresh = build_model("fastunet", base_channels=4, depth=2, aux_classes=5)
    report = load_pretrained_into(fresh, plain)
    assert report.missing == ("net.aux_head.weight", "net.aux_head.bias")
    with pytest.raises(InputError, match="aux_classes >= 0"):
        build_model("fastunet", aux_classes=-1)


def test_poppy_with_landcover_loss() -> None:
    from models.losses import DiceFocalLoss, PoppyWithLandCoverLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 8, 8)
    poppy = torch.randint(0, 2, (2, 8, 8))
    loss = PoppyWithLandCoverLoss()
    base = DiceFocalLoss()(logits[:, :1], poppy)
    assert torch.allclose(loss(logits, poppy), base)  # no land-cover target: the poppy loss alone
    unknown = torch.full((2, 8, 8), 255)
    assert torch.allclose(loss(logits, torch.stack([poppy, unknown], 1)), base)  # all ignored
    classes = torch.randint(1, 5, (2, 8, 8))
    wrong = loss(logits, torch.stack([poppy, classes], 1))
    good = logits.clone()
    good[:, 1:] = -10.0
    good[:, 1:].scatter_(1, classes[:, None], 10.0)
    right = loss(good, torch.stack([poppy, classes], 1))
    assert wrong > base and right < wrong
    assert torch.allclose(right, base, atol=0.05)  # confident and right: the land-cover term is near zero
    nodata_or_unknown_class = torch.stack([poppy, torch.where(classes > 2, 7, 0)], 1)  # class 7 >= 5 outputs
    assert torch.allclose(loss(logits, nodata_or_unknown_class), base)
