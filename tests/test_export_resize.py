"""`constant_scale_resizes`: the swapped model computes exactly what the model computes."""

import pytest
import torch

from podium.inference.export_resize import (
    ConstantScaleHead,
    ConstantScaleResize,
    constant_scale_resizes,
)
from podium.models import create_model


def model_of(architecture, **kwargs):
    torch.manual_seed(0)
    return create_model(architecture, num_classes=2, pretrained=False, **kwargs).eval()


@pytest.mark.parametrize(
    "architecture, kwargs",
    [
        ("unet", {"encoder": "resnet18"}),
        ("fpn", {"encoder": "resnet18"}),
        ("unet", {"encoder": "resnet18", "aux_heads": {"presence": {"type": "presence"}}}),
    ],
)
def test_swapped_model_equals_the_model_at_any_size(architecture, kwargs):
    model = model_of(architecture, **kwargs)
    swapped = constant_scale_resizes(model, torch.randn(1, 3, 67, 99))
    assert swapped is not model
    assert isinstance(swapped.head, ConstantScaleHead)
    assert all(isinstance(layer, ConstantScaleResize) for layer in swapped.decoder.upsamples)
    with torch.no_grad():
        for size in [(32, 32), (75, 133), (160, 96)]:
            images = torch.randn(2, 3, *size)
            expected, got = model(images), swapped(images)
            if isinstance(expected, dict):
                assert set(got) == set(expected)
                for key in expected:
                    torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
            else:
                assert got.shape == expected.shape == (2, 2, *size)
                torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_a_resize_that_is_not_by_its_scale_keeps_the_model():
    model = model_of("unet", encoder="resnet18")
    model.decoder.upsamples[1].scale_factor = 4  # the decoder resizes by 2 there
    assert constant_scale_resizes(model, torch.randn(1, 3, 67, 99)) is model
    assert not isinstance(model.head, ConstantScaleHead)  # the model itself is untouched


def test_a_model_without_toolbelt_resizes_is_returned_as_it_is():
    model = torch.nn.Conv2d(3, 1, 3, padding=1).eval()
    assert constant_scale_resizes(model, torch.randn(1, 3, 8, 8)) is model
