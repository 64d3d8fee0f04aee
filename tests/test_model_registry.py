"""podium.models' one entry point: the registry (create_model / list_models / register_model),
the old build_* builders as aliases, PaddedModel's pad-and-crop for every model kind, and
state-dict keys identical to the models before the registry (old checkpoints load)."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from podium.errors import PodiumError
from podium.models import (
    PaddedModel,
    build_segmentation_model,
    create_model,
    get_model,
    list_models,
    register_model,
)
from podium.models.centernet import build_centernet
from podium.models.detector import build_box_classifier
from podium.models.geopose import build_geopose_model
from podium.targets import call_target, check_targets

KEYS_BEFORE = json.loads((Path(__file__).parent / "model_keys_e55c5fe.json").read_text())
OLD_BUILDERS = {
    "unet": build_segmentation_model,
    "fpn": build_segmentation_model,
    "centernet": build_centernet,
    "geopose": build_geopose_model,
    "boxes": build_box_classifier,
}
OLD_TARGETS = {
    "unet": "podium.models.build_segmentation_model",
    "fpn": "podium.models.build_segmentation_model",
    "centernet": "podium.models.centernet.build_centernet",
    "geopose": "podium.models.geopose.build_geopose_model",
    "boxes": "podium.models.detector.build_box_classifier",
}


def _old_kwargs(name: str, kwargs: dict) -> dict:
    return {"architecture": name, **kwargs} if name in ("unet", "fpn") else dict(kwargs)


def _keys_digest(model: nn.Module):
    lines = [f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items()]
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


# ------------------------------------------------------------------------------------- registry
def test_registered_names():
    assert list_models() == ["boxes", "centernet", "fpn", "geopose", "unet"]
    assert list_models("*net") == ["centernet", "unet"]
    assert get_model("unet") is get_model("Unet") is get_model("UNET")  # smp-style case
    assert get_model("centernet") is build_centernet
    assert get_model("geopose") is build_geopose_model
    assert get_model("boxes") is build_box_classifier


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "unte",
            r'unknown model "unte" \(did you mean "unet"\?\); expected one of: boxes, '
            r"centernet, fpn, geopose, unet",
        ),
        ("centrenet", r'did you mean "centernet"'),
        ("resnet18", r'unknown model "resnet18"; expected one of: '),
        (None, r"model needs `name:`"),
    ],
)
def test_unknown_name_is_one_line_with_the_registered_names(name, expected):
    with pytest.raises(PodiumError, match=expected) as info:
        create_model(name)
    assert "\n" not in str(info.value)


def test_create_model_checks_keys_against_the_builder():
    with pytest.raises(
        PodiumError,
        match=r'unknown key "encodr" in model \(did you mean '
        r'"encoder"\?\); unet accepts: encoder, in_channels',
    ):
        create_model("unet", encodr="resnet18")
    with pytest.raises(PodiumError, match=r'unknown key "head_channels" in model'):
        create_model("unet", head_channels=8)  # a centernet key


def test_config_checks_resolve_the_name_before_a_run_starts():
    """check_targets (config load) sees through create_model: name and keys are checked."""
    check_targets({"model": {"_target_": "podium.models.create_model", "name": "fpn"}})
    with pytest.raises(PodiumError, match='unknown model "unte"'):
        check_targets({"model": {"_target_": "podium.models.create_model", "name": "unte"}})
    with pytest.raises(PodiumError, match=r'unknown key "architecture" in model'):
        check_targets(
            {
                "model": {
                    "_target_": "podium.models.create_model",
                    "name": "unet",
                    "architecture": "unet",
                }
            }
        )
    with pytest.raises(
        PodiumError,
        match=r'unknown key "output_strid" in model \(did you mean '
        r'"output_stride"\?\)',
    ):
        check_targets(
            {
                "model": {
                    "_target_": "podium.models.create_model",
                    "name": "centernet",
                    "output_strid": 4,
                }
            }
        )


def test_register_model_function_or_class():
    @register_model("test_registry_tiny")
    class Tiny(PaddedModel):
        def __init__(self, in_channels: int = 3, num_classes: int = 1):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, num_classes, 3, padding=1)

        def forward_padded(self, image):
            return self.conv(image)

    @register_model
    def test_registry_fn(num_classes: int = 2):
        return Tiny(num_classes=num_classes)

    try:
        assert {"test_registry_tiny", "test_registry_fn"} <= set(list_models())
        assert create_model("test_registry_tiny", in_channels=1)(torch.zeros(1, 1, 5, 7)).shape == (
            1,
            1,
            5,
            7,
        )
        assert create_model("Test_Registry_Fn").conv.out_channels == 2
        with pytest.raises(ValueError, match="registered twice"):
            register_model("test_registry_tiny")(test_registry_fn)
    finally:
        from podium.models import registry

        registry._MODELS.pop("test_registry_tiny"), registry._MODELS.pop("test_registry_fn")


# ---------------------------------------------------------------- same keys as before the registry
@pytest.mark.parametrize("case", [k for k in KEYS_BEFORE if not k.startswith("_")])
def test_state_dict_keys_unchanged(case):
    """create_model, the old builder and the old config block build the model of e55c5fe:
    identical state-dict keys and shapes (in order), so checkpoints saved before load."""
    spec = KEYS_BEFORE[case]
    name, kwargs = spec["name"], spec["kwargs"]
    expected = (spec["count"], spec["sha256"])
    new = create_model(name, **kwargs)
    assert _keys_digest(new) == expected
    old = OLD_BUILDERS[name](**_old_kwargs(name, kwargs))
    assert _keys_digest(old) == expected
    old_config = {"_target_": OLD_TARGETS[name], **_old_kwargs(name, kwargs)}
    from_old_config = call_target(old_config, "model")
    assert type(from_old_config) is type(new)
    from_old_config.load_state_dict(new.state_dict())  # strict: every key fits


def test_a_run_saved_before_the_registry_is_rebuilt_by_predict(tmp_path):
    """podium predict rebuilds a run's model from its saved config: an old-style block
    (build_segmentation_model + architecture, pretrained: true) loads the checkpoint, and the
    weights are those of the checkpoint (pretrained is not looked for)."""
    from podium.inference.checkpoint import load_model

    model = create_model("fpn", encoder="resnet18", in_channels=1, num_classes=2)
    torch.save({"model_state_dict": model.state_dict()}, tmp_path / "best.pth")
    old_block = {
        "_target_": "podium.models.build_segmentation_model",
        "architecture": "fpn",
        "encoder": "resnet18",
        "in_channels": 1,
        "num_classes": 2,
        "pretrained": True,  # no weights on this machine: must not be needed
    }
    loaded, _ = load_model(None, str(tmp_path / "best.pth"), old_block)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


# ------------------------------------------------------------------------- pad and crop, per kind
def _reference(model: PaddedModel, image: torch.Tensor, **inputs):
    """By hand: reflect-pad bottom/right to the encoder's coarsest stride (replicate when the
    pad is not smaller than the side), forward_padded, crop each map to ceil(side / stride)."""
    height, width = image.shape[-2:]
    multiple = model.pad_multiple
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    outputs = model.forward_padded(F.pad(image, (0, pad_w, 0, pad_h), mode=mode), **inputs)
    return outputs, pad_h, pad_w


SIZES = [(37, 53), (64, 65), (33, 31), (10, 7)]  # odd, one side odd, just over 32, tiny


@pytest.mark.parametrize("name", ["unet", "fpn"])
def test_segmentation_pads_and_crops_to_the_input(name):
    torch.manual_seed(0)
    model = create_model(
        name, encoder="resnet18", in_channels=2, num_classes=3, decoder_channels=8
    ).eval()
    assert isinstance(model, PaddedModel) and model.pad_multiple == 32 and model.map_strides == 1
    with torch.no_grad():
        for height, width in SIZES:
            image = torch.randn(1, 2, height, width)
            out = model(image)
            assert out.shape == (1, 3, height, width)
            reference, _, _ = _reference(model, image)
            torch.testing.assert_close(out, reference[..., :height, :width])


@pytest.mark.parametrize("output_stride", [4, 8])
def test_centernet_maps_are_cropped_at_their_stride(output_stride):
    torch.manual_seed(0)
    model = create_model(
        "centernet", encoder="resnet18", num_classes=2, head_channels=8, output_stride=output_stride
    ).eval()
    assert model.pad_multiple == 32 and model.map_strides == output_stride
    with torch.no_grad():
        for height, width in SIZES:
            image = torch.randn(1, 3, height, width)
            out = model(image)
            reference, pad_h, pad_w = _reference(model, image)
            # the padded maps are exactly padded side / stride; the crop is ceil(side / stride)
            assert reference["heatmap"].shape[-2:] == (
                (height + pad_h) // output_stride,
                (width + pad_w) // output_stride,
            )
            cells = (math.ceil(height / output_stride), math.ceil(width / output_stride))
            for key in ("heatmap", "size", "offset"):
                assert out[key].shape[-2:] == cells
                torch.testing.assert_close(out[key], reference[key][..., : cells[0], : cells[1]])
    assert out["heatmap"].shape[1] == 2 and out["size"].shape[1] == 2


def test_geopose_crops_the_maps_and_leaves_the_per_image_outputs():
    torch.manual_seed(0)
    model = create_model(
        "geopose", encoder="resnet18", scalar_inputs=["gsd"], head_channels=8, hidden_features=8
    ).eval()
    gsd = torch.tensor([0.3, 0.5])
    with torch.no_grad():
        for height, width in SIZES:
            image = torch.randn(2, 3, height, width)
            out = model(image, gsd=gsd)
            reference, _, _ = _reference(model, image, gsd=gsd)
            for key in ("height", "magnitude"):
                assert out[key].shape == (2, 1, height, width)
                torch.testing.assert_close(out[key], reference[key][..., :height, :width])
            assert out["direction"].shape == (2, 2) and out["scale"].shape == (2, 1)
            torch.testing.assert_close(out["direction"], reference["direction"])
            torch.testing.assert_close(out["scale"], reference["scale"])


def test_boxes_model_is_not_padded():
    """Its boxes are relative to the input as given: no padding, nothing cropped."""
    torch.manual_seed(0)
    model = create_model("boxes", encoder="resnet18", num_classes=2).eval()
    assert model.pad_multiple == 1 and model.map_strides is None
    with torch.no_grad():
        for height, width in SIZES[:3]:
            image = torch.randn(2, 3, height, width)
            out, direct = model(image), model.forward_padded(image)
            assert out["logits"].shape == (2, 2) and out["boxes"].shape == (2, 4)
            for key in out:
                torch.testing.assert_close(out[key], direct[key])


def test_no_padding_no_crop_for_multiples():
    model = create_model("unet", encoder="resnet18", in_channels=1, decoder_channels=8).eval()
    image = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(image), model.forward_padded(image))


def test_reflect_pad_is_the_tiles_rule_too():
    from podium.models.base import pad_to_multiple, reflect_pad

    image = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(1, 2, 5, 6)
    torch.testing.assert_close(
        reflect_pad(image, (1, 2, 3, 4)), F.pad(image, (1, 2, 3, 4), mode="reflect")
    )
    torch.testing.assert_close(
        reflect_pad(image, (0, 6, 0, 0)), F.pad(image, (0, 6, 0, 0), mode="replicate")
    )
    assert pad_to_multiple(image, 4).shape[-2:] == (8, 8)
    assert pad_to_multiple(image, 1) is image
