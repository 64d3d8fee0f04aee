"""podium.models: U-Net / FPN on timm encoders via pytorch-toolbelt (CPU, small inputs)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from podium.errors import PodiumError
from podium.models import SegmentationModel, build_segmentation_model

ENCODERS = ["resnet18", "efficientnet_b0", "convnext_nano"]  # convnext: first feature stride 4


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("architecture", ["unet", "fpn"])
def test_output_shape_any_size(architecture, encoder):
    model = build_segmentation_model(architecture, encoder, in_channels=4, num_classes=3).eval()
    assert isinstance(model, SegmentationModel)
    assert model.pad_multiple == 32
    with torch.no_grad():
        for height, width in [(64, 64), (67, 45)]:
            logits = model(torch.randn(2, 4, height, width))
            assert logits.shape == (2, 3, height, width)
            assert torch.isfinite(logits).all()


@pytest.mark.parametrize("in_channels", [1, 3, 4])
@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize("architecture", ["unet", "fpn"])
def test_channels_and_classes(architecture, in_channels, num_classes):
    model = build_segmentation_model(
        architecture,
        "resnet18",
        in_channels=in_channels,
        num_classes=num_classes,
        decoder_channels=16,
    ).eval()
    with torch.no_grad():
        assert model(torch.randn(1, in_channels, 33, 70)).shape == (1, num_classes, 33, 70)


def test_tiny_input_uses_replicate_fallback():
    model = build_segmentation_model(in_channels=1, decoder_channels=8).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 10, 7)).shape == (1, 1, 10, 7)


@pytest.mark.parametrize("architecture", ["unet", "fpn"])
def test_padding_is_reflect_bottom_right_and_cropped_back(architecture):
    torch.manual_seed(0)
    model = build_segmentation_model(
        architecture, "resnet18", in_channels=3, num_classes=2, decoder_channels=16
    ).eval()
    x = torch.randn(1, 3, 70, 70)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 2, 70, 70)
        assert torch.equal(out, model(x))  # deterministic in eval mode
        # same as running on the explicitly reflect-padded 96×96 image, top-left 70×70 crop
        padded = F.pad(x, (0, 26, 0, 26), mode="reflect")
        full = model(padded)
        assert full.shape == (1, 2, 96, 96)
        torch.testing.assert_close(out, full[..., :70, :70])
        # a 64×64 input (multiple of 32) is not padded at all
        y = x[..., :64, :64]
        torch.testing.assert_close(model(y), model.forward_padded(y))
        # zero padding would give a different answer: the pad mode is really reflect
        zero = model.forward_padded(F.pad(x, (0, 26, 0, 26)))[..., :70, :70]
        assert not torch.allclose(out, zero)


def test_gradient_flows_to_encoder_and_freezing_keeps_decoder_trainable():
    model = build_segmentation_model(
        "unet", "resnet18", in_channels=1, num_classes=1, decoder_channels=16
    ).train()
    x = torch.randn(2, 1, 67, 45)
    model(x).mean().backward()
    encoder_grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in encoder_grads)
    assert sum(g.abs().sum().item() for g in encoder_grads) > 0

    # .encoder holds exactly the timm feature extractor's parameters
    timm_params = {id(p) for p in model.encoder.encoder.parameters()}
    assert type(model.encoder.encoder).__module__.startswith("timm.")
    assert {id(p) for p in model.encoder.parameters()} == timm_params
    other = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    assert other and not any(id(p) in timm_params for p in other)

    model.zero_grad(set_to_none=True)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    model(x).mean().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.requires_grad and p.grad is not None for p in model.decoder.parameters())
    assert all(p.requires_grad and p.grad is not None for p in model.head.parameters())


def test_decoder_channels_and_dropout():
    model = build_segmentation_model(
        "unet", "convnext_nano", decoder_channels=[8, 16, 32], dropout=0.2
    )
    assert model.decoder.get_output_spec().channels == (8, 16, 32)
    assert model.head.dropout.p == 0.2
    with pytest.raises(PodiumError, match="decoder_channels has 4 values"):
        build_segmentation_model("unet", "convnext_nano", decoder_channels=[8, 16, 32, 64])


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(encoder="resnet19"), r'unknown encoder "resnet19" \(did you mean "resnet18"\?\)'),
        (
            dict(architecture="unte"),
            r'unknown model architecture "unte" \(did you mean "unet"\?\).*unet, fpn',
        ),
        (dict(num_classes=0), r"num_classes must be an integer >= 1, got 0"),
        (dict(in_channels=-1), r"in_channels must be an integer >= 1, got -1"),
        (dict(dropout=1.5), r"dropout must be a number in \[0, 1\)"),
    ],
)
def test_bad_input_raises_podium_error(kwargs, expected):
    with pytest.raises(PodiumError, match=expected) as info:
        build_segmentation_model(**kwargs)
    assert "\n" not in str(info.value)


def test_pretrained_offline_fails_fast_with_podium_error(tmp_path):
    code = textwrap.dedent(
        """
        from podium.errors import PodiumError
        from podium.models import build_segmentation_model
        try:
            build_segmentation_model(encoder="resnet18", pretrained=True)
        except PodiumError as error:
            print("PODIUM:", error)
        """
    )
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        TORCH_HOME=str(tmp_path / "torch"),
        PYTHONWARNINGS="ignore",
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("PODIUM:") and "\n" not in line
    assert "resnet18" in line and "pretrained: false" in line
