"""podium.inference.tta against pytorch-toolbelt's TTA, hand-made references and equivariance."""

import pytest
import torch
import torch.nn.functional as F
from pytorch_toolbelt.inference import tta as toolbelt

from podium.errors import PodiumError
from podium.inference.tta import (
    TOOLBELT_D4_VIEWS,
    TTA,
    View,
    augment,
    build_tta,
    d4_vector_deaugment,
    deaugment_maps,
    deaugment_vectors,
    dihedral_views,
)
from podium.models import build_segmentation_model

D4 = dihedral_views("d4")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny inputs: one intra-op thread is as fast, and does not stall when the shared cores are
    busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def unet():
    """A random resnet18 U-Net (eval) whose logits are O(1), so a 1e-5 tolerance is strict."""
    torch.manual_seed(0)
    model = build_segmentation_model(encoder="resnet18", num_classes=2, pretrained=False).eval()
    with torch.no_grad():
        model.head.final.weight.mul_(30.0)
    return model


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


# ---------------------------------------------------------------- hand-made references


def forward_vector(vectors: torch.Tensor, view: View) -> torch.Tensor:
    """How a view moves an (x, y) vector: transpose swaps, h-flip negates x, v-flip negates y."""
    x, y = vectors[:, 0], vectors[:, 1]
    if view.transpose:
        x, y = y, x
    if view.hflip:
        x = -x
    if view.vflip:
        y = -y
    return torch.stack([x, y], dim=1)


def centroid(images: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centroid (x, y) relative to the image centre: exactly D4-equivariant."""
    weights = images.abs().sum(dim=1)  # B×H×W
    height, width = weights.shape[-2:]
    ys = torch.arange(height, dtype=images.dtype) - (height - 1) / 2
    xs = torch.arange(width, dtype=images.dtype) - (width - 1) / 2
    total = weights.sum(dim=(1, 2))
    return torch.stack(
        [(weights * xs).sum(dim=(1, 2)) / total, (weights * ys[:, None]).sum(dim=(1, 2)) / total],
        dim=1,
    )


def spread(images: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted standard deviation (w, h) along x and y: an extent (transpose swaps
    it)."""
    weights = images.abs().sum(dim=1)
    height, width = weights.shape[-2:]
    ys = torch.arange(height, dtype=images.dtype) - (height - 1) / 2
    xs = torch.arange(width, dtype=images.dtype) - (width - 1) / 2
    total = weights.sum(dim=(1, 2))
    var_x = (weights * xs**2).sum(dim=(1, 2)) / total
    var_y = (weights * ys[:, None] ** 2).sum(dim=(1, 2)) / total
    return torch.stack([var_x.sqrt(), var_y.sqrt()], dim=1)


def gradient_field(images: torch.Tensor) -> torch.Tensor:
    """Central-difference gradient (d/dx, d/dy) of the channel sum, zero-padded: an equivariant
    vector field."""
    gray = images.sum(dim=1, keepdim=True)
    dx = (F.pad(gray, (0, 2, 0, 0))[..., :, 2:] - F.pad(gray, (2, 0, 0, 0))[..., :, :-2]) * 0.5
    dy = (F.pad(gray, (0, 0, 0, 2))[..., 2:, :] - F.pad(gray, (0, 0, 2, 0))[..., :-2, :]) * 0.5
    return torch.cat([dx, dy], dim=1)


class VectorNet(torch.nn.Module):
    """Not equivariant at all: conv → ReLU → global mean → linear to 2 numbers (+ a 3-class
    head)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.vector = torch.nn.Linear(8, 2)
        self.label = torch.nn.Linear(8, 3)

    def forward(self, images):
        features = torch.relu(self.conv(images)).mean(dim=(2, 3))
        return {
            "direction": self.vector(features),
            "label": self.label(features),
            "map": self.conv(images)[:, :2],
        }


def rot_reference(model, images):
    """D4 by hand for any H×W: rot90 by k of the image and of its transpose, rotated back."""
    outputs = []
    for transposed in (False, True):
        source = images.transpose(2, 3) if transposed else images
        for k in range(4):
            out = torch.rot90(model(torch.rot90(source, k, dims=(2, 3))), -k, dims=(2, 3))
            outputs.append(out.transpose(2, 3) if transposed else out)
    return torch.stack(outputs).mean(dim=0)


# ---------------------------------------------------------------- masks vs toolbelt


@torch.no_grad()
def test_d4_equals_toolbelt_d4_image2mask(unet, images):
    expected = toolbelt.d4_image2mask(unet, images)
    got = build_tta("d4")(unet, images)
    assert got.shape == expected.shape == (2, 2, 64, 64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert (
        unet(images) - expected
    ).abs().max() > 0.05  # the views really differ: the check can fail


@torch.no_grad()
def test_flip_and_d2_equal_toolbelt(unet, images):
    flip = toolbelt.fliplr_image2mask(unet, images)
    torch.testing.assert_close(build_tta("flip")(unet, images), flip, rtol=0, atol=1e-5)
    d2 = toolbelt.d2_image_deaugment(unet(toolbelt.d2_image_augment(images)))
    torch.testing.assert_close(build_tta("d2")(unet, images), d2, rtol=0, atol=1e-5)
    assert [build_tta(m).num_views for m in ("none", "flip", "d2", "d4", "multiscale")] == [
        1,
        2,
        4,
        8,
        3,
    ]


def test_toolbelt_d4_order_as_views(images):
    """TOOLBELT_D4_VIEWS (used by d4_vector_deaugment) are toolbelt's d4_image_augment views, in
    order."""
    for chunk, view in zip(torch.chunk(toolbelt.d4_image_augment(images), 8), TOOLBELT_D4_VIEWS):
        assert torch.equal(chunk, augment(images, view)), view
    assert set(TOOLBELT_D4_VIEWS) == set(D4)


@torch.no_grad()
def test_d4_non_square_equals_view_by_view_reference(unet):
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with pytest.raises(ValueError):  # toolbelt's D4 refuses non-square inputs
        toolbelt.d4_image2mask(unet, images)
    got = build_tta("d4")(unet, images)
    assert got.shape == (2, 2, 64, 96)
    torch.testing.assert_close(got, rot_reference(unet, images), rtol=0, atol=1e-5)


@torch.no_grad()
def test_d4_output_is_equivariant(unet, images):
    """The D4 mean of any model is D4-equivariant: tta(g·x) = g·tta(x) for all 8 g."""
    tta, images = build_tta("d4"), images[:1]
    base = tta(unet, images)
    for view in D4:
        torch.testing.assert_close(
            tta(unet, augment(images, view)), augment(base, view), rtol=0, atol=1e-5
        )


@torch.no_grad()
def test_every_chunk_size_gives_the_same_result(unet):
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))  # 4 view sizes
    spec = {"views": "d4", "scales": [1.0, 0.75]}
    reference = build_tta(dict(spec, max_views_per_batch=1, channels_last=False))(unet, images)
    for size, channels_last in ((2, False), (3, True), (16, False), (None, "auto")):
        tta = build_tta(dict(spec, max_views_per_batch=size, channels_last=channels_last))
        torch.testing.assert_close(tta(unet, images), reference, rtol=0, atol=1e-5)
    images = torch.cat([images, images])
    calls = []
    build_tta(dict(spec, max_views_per_batch=3))(
        lambda x: calls.append(tuple(x.shape)) or x[:, :1], images
    )
    # views of different sizes never share a batch; each size's 4 views go 3 + 1
    assert calls == [
        (6, 3, 64, 96),
        (2, 3, 64, 96),
        (6, 3, 96, 64),
        (2, 3, 96, 64),
        (6, 3, 48, 72),
        (2, 3, 48, 72),
        (6, 3, 72, 48),
        (2, 3, 72, 48),
    ]


def test_default_chunking_by_device():
    tta = build_tta("d4")
    cpu = torch.empty(4, 3, 256, 256)
    gpu_like = torch.empty(4, 3, 256, 256, device="meta")  # any non-CPU device: the pixel budget
    assert tta.views_per_batch(cpu, (256, 256)) == 1
    assert tta.views_per_batch(gpu_like, (256, 256)) == 8  # 2**21 px / (4·256²)
    assert tta.views_per_batch(torch.empty(16, 3, 1024, 1024, device="meta"), (1024, 1024)) == 1
    assert (
        build_tta({"views": "d4", "max_views_per_batch": 4}).views_per_batch(cpu, (256, 256)) == 4
    )
    # channels_last: auto = CPU forwards of >= 2**17 pixels (faster there, measured), else as asked
    assert tta.use_channels_last(cpu) and not tta.use_channels_last(torch.empty(4, 3, 64, 64))
    assert not tta.use_channels_last(gpu_like)
    assert build_tta({"views": "d4", "channels_last": True}).use_channels_last(
        torch.empty(1, 3, 8, 8)
    )
    assert not build_tta({"views": "d4", "channels_last": False}).use_channels_last(cpu)


# ---------------------------------------------------------------- multiscale


@torch.no_grad()
def test_multiscale_scale_one_is_the_plain_forward(unet, images):
    expected = unet(images)
    exact = build_tta({"scales": [1.0], "channels_last": False})
    torch.testing.assert_close(exact(unet, images), expected, rtol=0, atol=0)
    multiscale = build_tta({"views": "multiscale", "scales": [1.0], "channels_last": True})
    torch.testing.assert_close(multiscale(unet, images), expected, rtol=0, atol=1e-5)


@torch.no_grad()
def test_multiscale_matches_hand_reference(unet):
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    got = build_tta({"views": "flip", "scales": [0.75, 1.25]})(unet, images)
    outputs = []
    for size in ((48, 72), (80, 120)):
        scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        for flip in (False, True):
            out = unet(scaled.flip(3) if flip else scaled)
            out = out.flip(3) if flip else out
            outputs.append(F.interpolate(out, size=(64, 96), mode="bilinear", align_corners=False))
    torch.testing.assert_close(got, torch.stack(outputs).mean(dim=0), rtol=0, atol=1e-5)


def test_scaled_sizes_round_half_up():
    assert View(scale=0.7).scaled_size((65, 97)) == (46, 68)  # 45.5 → 46, 67.9 → 68
    assert View(scale=0.75).scaled_size((256, 256)) == (192, 192)
    assert View(scale=0.01).scaled_size((20, 30)) == (1, 1)
    assert View(transpose=True, scale=0.5).input_size((64, 96)) == (48, 32)


# ---------------------------------------------------------------- vectors


def test_deaugment_vectors_undoes_every_d4_view_exactly():
    images = torch.rand(3, 3, 40, 56, generator=torch.Generator().manual_seed(6)) ** 4
    xy, wh = centroid(images), spread(images)
    for view in D4:
        seen = augment(images, view)
        # the reference is right: centroid is equivariant, forward_vector moves it like the view
        torch.testing.assert_close(centroid(seen), forward_vector(xy, view), rtol=0, atol=1e-4)
        torch.testing.assert_close(
            deaugment_vectors(centroid(seen), view, "xy"), xy, rtol=0, atol=1e-4
        )
        torch.testing.assert_close(
            deaugment_vectors(centroid(seen).flip(1), view, "yx"), xy.flip(1), rtol=0, atol=1e-4
        )
        torch.testing.assert_close(
            deaugment_vectors(spread(seen), view, "wh"), wh, rtol=0, atol=1e-4
        )
    assert (xy.abs() > 0.1).all()


def test_tta_of_any_vector_function_is_equivariant():
    """A random, non-equivariant network averaged over D4 with rule xy: tta(g·x) = A_g tta(x)."""
    net = VectorNet()
    images = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(7))
    tta = build_tta("d4", vector_keys={"direction": "xy", "label": "scalar"})
    with torch.no_grad():
        base = tta(net, images)
        for view in D4:
            moved = tta(net, augment(images, view))
            torch.testing.assert_close(
                moved["direction"], forward_vector(base["direction"], view), rtol=0, atol=1e-5
            )
            torch.testing.assert_close(moved["label"], base["label"], rtol=0, atol=1e-5)
            torch.testing.assert_close(moved["map"], augment(base["map"], view), rtol=0, atol=1e-5)
        assert (
            net(images)["direction"] - base["direction"]
        ).abs().max() > 1e-3  # averaging did something


def test_vector_maps_are_deaugmented_per_pixel():
    images = torch.randn(2, 3, 24, 40, generator=torch.Generator().manual_seed(8))
    field = gradient_field(images)
    for view in D4:
        back = deaugment_maps(gradient_field(augment(images, view)), view, (24, 40), rule="xy")
        torch.testing.assert_close(back, field, rtol=0, atol=1e-5)
        wrong = deaugment_maps(
            gradient_field(augment(images, view)), view, (24, 40)
        )  # undeclared: as scalars
        if view.hflip or view.vflip or view.transpose:
            assert not torch.allclose(wrong, field, atol=1e-3)
    tta = build_tta("d4", vector_keys="xy")
    torch.testing.assert_close(tta(gradient_field, images), field, rtol=0, atol=1e-5)


def cell_outputs(images: torch.Tensor) -> dict:
    """Exactly D4-equivariant outputs at stride 4 when H, W are multiples of 4: 4×4 cell means, the
    gradient field of the cell means (a vector map), and the input itself (a full-size map)."""
    cells = F.avg_pool2d(images, 4)
    return {"cells": cells, "flow": gradient_field(cells), "pixels": images[:, :1] * 2}


@pytest.mark.parametrize("mode", ["flip", "d2", "d4"])
def test_maps_at_a_stride_are_moved_back_cell_by_cell(mode):
    """30×45 is padded to 32×48 so that cells line up in every view: each view, undone, gives the
    cells of the zero-padded image, the full-size map comes back 30×45."""
    images = torch.randn(2, 3, 30, 45, generator=torch.Generator().manual_seed(12))
    padded = F.pad(images, (0, 3, 0, 2))
    got = build_tta(mode, vector_keys={"flow": "xy"}, stride=4)(cell_outputs, images)
    torch.testing.assert_close(got["cells"], F.avg_pool2d(padded, 4), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        got["flow"], gradient_field(F.avg_pool2d(padded, 4)), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(got["pixels"], images[:, :1] * 2, rtol=0, atol=1e-6)
    # undeclared, the flow map would be moved back as scalars: wrong for every flipped view
    wrong = build_tta(mode, stride=4)(cell_outputs, images)["flow"]
    assert not torch.allclose(wrong, got["flow"], atol=1e-3)


def test_a_lone_identity_view_is_not_padded():
    images = torch.randn(1, 3, 30, 45, generator=torch.Generator().manual_seed(13))
    got = build_tta("none", stride=4)(lambda x: F.avg_pool2d(x, 4, ceil_mode=True), images)
    torch.testing.assert_close(got, F.avg_pool2d(images, 4, ceil_mode=True))
    with pytest.raises(PodiumError, match="stride 4 takes flips and transposes only"):
        build_tta("multiscale", stride=4)
    with pytest.raises(PodiumError, match=r"or at 1/4 \(8×12\)"):
        build_tta("flip", stride=4)(lambda x: F.avg_pool2d(x, 2), images)


def test_pixel_vectors_are_divided_by_the_real_scale():
    images = torch.rand(2, 3, 30, 50, generator=torch.Generator().manual_seed(9))
    got = build_tta({"views": "flip", "scales": [0.5, 1.3]}, vector_keys="xy_pixels")(
        centroid, images
    )
    expected = []
    for size in ((15, 25), (39, 65)):
        scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        for flip in (False, True):
            vector = centroid(scaled.flip(3) if flip else scaled)
            vector = vector * torch.tensor([-1.0 if flip else 1.0, 1.0])
            expected.append(vector / torch.tensor([size[1] / 50, size[0] / 30]))
    torch.testing.assert_close(got, torch.stack(expected).mean(dim=0), rtol=0, atol=1e-5)


def view_extent_hw(images: torch.Tensor) -> torch.Tensor:
    """The view's own height and width in pixels, per image (B×2, h then w): an extent in pixels."""
    size = torch.tensor([float(images.shape[-2]), float(images.shape[-1])])
    return size.repeat(images.shape[0], 1)


def test_pixel_rules_use_each_axis_rounded_scale_on_odd_sizes():
    """65×97 at scale 0.7 is 46×68 (45.5 → 46, 67.9 → 68): real scales 46/65 ≈ 0.708 for y and
    68/97 ≈ 0.701 for x, neither is 0.7. Each pixel quantity is divided by its own axis's scale."""
    size, scaled = (65, 97), (46, 68)  # rounded by hand, halves up
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(12)) ** 4
    images[:, :, 5:15, 60:80] += 2.0  # a bright patch off-centre: a centroid of tens of pixels
    # the view's own extent, in pixels, maps back to the image's extent exactly, through every D4
    # view
    extents = {
        "hw": view_extent_hw,
        "wh": lambda x: view_extent_hw(x).flip(1),
        "hw_map": lambda x: view_extent_hw(x)[:, :, None, None].expand(-1, -1, *x.shape[-2:]),
    }
    fn = lambda x: {key: f(x) for key, f in extents.items()}  # noqa: E731
    tta = build_tta(
        {"views": "d4", "scales": [0.7]},
        vector_keys={"hw": "hw_pixels", "wh": "wh_pixels", "hw_map": "hw_pixels"},
    )
    got = tta(fn, images)
    torch.testing.assert_close(got["hw"], torch.tensor([[65.0, 97.0]] * 2), rtol=0, atol=1e-4)
    torch.testing.assert_close(got["wh"], torch.tensor([[97.0, 65.0]] * 2), rtol=0, atol=1e-4)
    torch.testing.assert_close(
        got["hw_map"],
        torch.tensor([65.0, 97.0])[None, :, None, None].expand(2, 2, *size),
        rtol=0,
        atol=1e-4,
    )
    for view in D4:
        view = View(view.transpose, view.hflip, view.vflip, 0.7)
        seen = view_extent_hw(augment(images, view))
        torch.testing.assert_close(
            deaugment_vectors(seen, view, "hw_pixels", size),
            torch.tensor([[65.0, 97.0]] * 2),
            rtol=0,
            atol=1e-4,
        )
    # a pixel vector (centroid) of the scaled view, x divided by 68/97 and y by 46/65
    got = build_tta({"views": "flip", "scales": [0.7]}, vector_keys="xy_pixels")(centroid, images)
    resized = F.interpolate(images, size=scaled, mode="bilinear", align_corners=False)
    plain, flipped = centroid(resized), centroid(resized.flip(3)) * torch.tensor([-1.0, 1.0])
    expected = (plain + flipped) / 2 / torch.tensor([68 / 97, 46 / 65])
    assert (
        expected.abs() > 3
    ).all()  # 1 % of it (0.701 vs 0.708 vs 0.7) is far above the tolerance
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_toolbelt_d4_labels_deaugment_drops_a_view():
    """toolbelt averages views [1, 2, 3, 4, 5, 7, 7, 8]; d4_vector_deaugment uses each once."""
    labels = torch.arange(8, dtype=torch.float32).repeat_interleave(2)[
        :, None
    ]  # 8 views × B=2, value = view index
    assert toolbelt.d4_labels_deaugment(labels)[0, 0].item() == pytest.approx(
        29 / 8
    )  # (0+1+2+3+4+6+6+7)/8
    assert d4_vector_deaugment(labels, rule="scalar")[0, 0].item() == pytest.approx(3.5)

    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(10)) ** 4
    images[:, :, 3:9, 20:30] += 2.0  # a bright patch off-centre: a long centroid vector
    vectors = centroid(toolbelt.d4_image_augment(images))
    exact = centroid(images)
    per_view = d4_vector_deaugment(vectors, reduction=None)
    for view_output in per_view:  # every view, mapped back, is the unaugmented vector
        torch.testing.assert_close(view_output, exact, rtol=0, atol=1e-4)
    torch.testing.assert_close(d4_vector_deaugment(vectors), exact, rtol=0, atol=1e-4)
    chunks = torch.chunk(
        vectors, 8
    )  # what toolbelt returns: no de-augmentation, view 6 lost, 7 twice
    torch.testing.assert_close(
        toolbelt.d4_labels_deaugment(vectors),
        (sum(chunks) - chunks[5] + chunks[6]) / 8,
        rtol=0,
        atol=1e-6,
    )
    assert (
        (toolbelt.d4_labels_deaugment(vectors) - exact).abs().max() > 0.5 * exact.abs().max() > 1.0
    )


# ---------------------------------------------------------------- outputs, errors


def test_dict_outputs_and_their_rules():
    net = VectorNet()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        got = build_tta("flip", vector_keys={"direction": "xy", "label": "scalar"})(net, images)
        plain, flipped = net(images), net(images.flip(3))
    assert set(got) == {"direction", "label", "map"}
    torch.testing.assert_close(got["label"], (plain["label"] + flipped["label"]) / 2)
    unflipped = flipped["direction"] * torch.tensor([-1.0, 1.0])  # a horizontal flip negates x
    torch.testing.assert_close(got["direction"], (plain["direction"] + unflipped) / 2)
    torch.testing.assert_close(got["map"], (plain["map"] + flipped["map"].flip(3)) / 2)
    # identity only: nothing to undo, nothing to declare
    assert set(build_tta("none")(net, images)) == {"direction", "label", "map"}


@pytest.mark.parametrize(
    "spec, vector_keys, fn, message",
    [
        (
            "flip",
            None,
            lambda x: {"m": x, "v": x.mean(dim=(2, 3))[:, :2]},
            'output "v" has no spatial dims',
        ),
        ("d4", {"v": "xy"}, lambda x: {"m": x}, 'vector_keys names output "v"'),
        ("d4", "xy", lambda x: x[:, :3], "needs 2 components"),
        ("flip", None, lambda x: (x > 0).long(), "dtype torch.int64"),
        ("flip", None, lambda x: F.avg_pool2d(x, 4), "de-augments maps at the input's resolution"),
        ("flip", None, lambda x: x[:1], "expected 2 rows"),
        ("flip", None, lambda x: [x], "expects a tensor or a dict"),
    ],
)
def test_ambiguous_outputs_raise(spec, vector_keys, fn, message):
    with pytest.raises(PodiumError, match=message):
        build_tta(spec, vector_keys=vector_keys)(fn, torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("flips", 'unknown tta views "flips" \\(did you mean "flip"\\?\\)'),
        ({"views": "d4", "scale": [1.0]}, 'unknown key "scale" in tta'),
        ({"views": "d4", "scales": []}, "non-empty list"),
        ({"views": "d4", "scales": [1.0, -0.5]}, "numbers > 0"),
        ({"views": "d4", "scales": [1.0, 1]}, "twice"),
        ({"views": "d4", "max_views_per_batch": 0}, "max_views_per_batch"),
        ({"views": "d4", "channels_last": "yes"}, "channels_last"),
        ({"views": "d4", "vector_keys": {"v": "xyz"}}, 'unknown output rule "xyz"'),
        (["d4"], "tta must be a mode"),
    ],
)
def test_bad_specs_raise(spec, message):
    with pytest.raises(PodiumError, match=message):
        build_tta(spec)


def test_bad_images_raise():
    with pytest.raises(PodiumError, match="B×C×H×W"):
        build_tta("d4")(lambda x: x, torch.randn(3, 16, 16))
    assert isinstance(build_tta(None), TTA) and build_tta(None).num_views == 1
    assert build_tta({"views": "d4", "scales": [0.75, 1.0, 1.25]}).num_views == 24
