"""podium.losses against references: torch built-ins, pytorch-toolbelt (where it is right) and
numpy by hand; edge cases (empty masks, all pixels ignored, one class); each toolbelt defect
that a podium loss fixes, shown on the toolbelt original."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import podium.losses as L
from podium.errors import PodiumError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pytorch_toolbelt.losses as TB

IGNORE = 255


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def binary_batch(seed=0, ignore=False, shape=(2, 1, 8, 8)):
    g = gen(seed)
    logits = torch.randn(shape, generator=g) * 2
    target = (torch.rand(shape, generator=g) > 0.6).float()
    if ignore:
        target[:, :, :3] = IGNORE
    return logits, target


def multiclass_batch(seed=0, classes=3, ignore=False):
    g = gen(seed)
    logits = torch.randn(2, classes, 8, 8, generator=g) * 2
    target = torch.randint(0, classes, (2, 8, 8), generator=g)
    if ignore:
        target[:, :3] = IGNORE
    return logits, target


def value_and_grad(loss_fn, logits, target):
    logits = logits.clone().requires_grad_(True)
    value = loss_fn(logits, target)
    value.backward()
    return value.detach(), logits.grad


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------- BCE / CE
def test_bce_matches_torch_and_toolbelt():
    logits, target = binary_batch()
    ours = L.BCEWithLogitsLoss()(logits, target)
    assert torch.allclose(ours, F.binary_cross_entropy_with_logits(logits, target))
    pos = L.BCEWithLogitsLoss(pos_weight=[3.0])(logits, target)
    ref = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor([3.0]))
    assert torch.allclose(pos, ref)
    soft = L.SoftBCEWithLogitsLoss(smooth_factor=0.1)(logits, target)
    assert torch.allclose(soft, TB.SoftBCEWithLogitsLoss(smooth_factor=0.1)(logits, target))
    assert torch.allclose(soft, F.binary_cross_entropy_with_logits(logits, target * 0.8 + 0.1))


def test_soft_bce_ignore_divides_by_kept_pixels_toolbelt_does_not():
    logits, target = binary_batch(ignore=True)
    keep = target != IGNORE
    reference = F.binary_cross_entropy_with_logits(logits[keep], target[keep])
    ours = L.SoftBCEWithLogitsLoss(ignore_index=IGNORE)(logits, target)
    toolbelt = TB.SoftBCEWithLogitsLoss(ignore_index=IGNORE)(logits, target)
    assert torch.allclose(ours, reference)
    assert not torch.allclose(toolbelt, reference, rtol=0.05)  # defect: / all pixels
    assert torch.allclose(toolbelt, reference * keep.float().mean())


def test_cross_entropy_matches_torch():
    logits, target = multiclass_batch(ignore=True)
    for kwargs in ({}, {"label_smoothing": 0.1}, {"weight": [1.0, 2.0, 0.5]}):
        torch_kwargs = dict(kwargs)
        if "weight" in kwargs:
            torch_kwargs["weight"] = torch.tensor(kwargs["weight"])
        ours = L.CrossEntropyLoss(ignore_index=IGNORE, **kwargs)(logits, target)
        ref = F.cross_entropy(logits, target, ignore_index=IGNORE, **torch_kwargs)
        assert torch.allclose(ours, ref, atol=1e-6), kwargs


def test_cross_entropy_all_ignored_is_zero_torch_is_nan():
    logits, _ = multiclass_batch()
    target = torch.full((2, 8, 8), IGNORE)
    assert torch.isnan(F.cross_entropy(logits, target, ignore_index=IGNORE))
    value, grad = value_and_grad(L.CrossEntropyLoss(ignore_index=IGNORE), logits, target)
    assert value == 0 and torch.all(grad == 0)


# ---------------------------------------------------------------------------- focal
def np_binary_focal(x, t, gamma, alpha=None, keep=None):
    p = sigmoid(x.astype(np.float64))
    p_t = np.where(t == 1, p, 1 - p)
    loss = -((1 - p_t) ** gamma) * np.log(p_t)
    if alpha is not None:
        loss *= np.where(t == 1, alpha, 1 - alpha)
    return loss[keep].mean() if keep is not None else loss.mean()


def test_binary_focal_matches_toolbelt_and_numpy():
    logits, target = binary_batch()
    for alpha in (None, 0.25):
        ours = L.FocalLoss("binary", alpha=alpha, gamma=2.0)(logits, target)
        toolbelt = TB.BinaryFocalLoss(alpha=alpha, gamma=2.0)(logits, target)
        assert torch.allclose(ours, toolbelt, atol=1e-6)
        assert ours.item() == pytest.approx(
            np_binary_focal(logits.numpy(), target.numpy(), 2.0, alpha), rel=1e-5
        )
    # gamma = 0 is plain BCE
    assert torch.allclose(
        L.BinaryFocalLoss(gamma=0.0)(logits, target),
        F.binary_cross_entropy_with_logits(logits, target),
    )


def test_binary_focal_ignore_defect_of_toolbelt():
    logits, target = binary_batch(ignore=True)
    keep = (target != IGNORE).numpy()
    reference = np_binary_focal(logits.numpy(), target.numpy(), 2.0, keep=keep)
    ours = L.BinaryFocalLoss(ignore_index=IGNORE)(logits, target)
    toolbelt = TB.BinaryFocalLoss(alpha=None, ignore_index=IGNORE)(logits, target)
    assert ours.item() == pytest.approx(reference, rel=1e-5)
    assert toolbelt.item() == pytest.approx(reference * keep.mean(), rel=1e-5)  # / all pixels
    assert toolbelt.item() != pytest.approx(reference, rel=0.05)


def np_softmax_focal(x, t, gamma, alpha=None, ignore=None):
    p = np_softmax(x.astype(np.float64))
    keep = np.ones_like(t, bool) if ignore is None else t != ignore
    safe = np.where(keep, t, 0)
    p_t = np.take_along_axis(p, safe[:, None], axis=1)[:, 0]
    loss = -((1 - p_t) ** gamma) * np.log(p_t)
    if alpha is not None:
        loss *= np.asarray(alpha)[safe]
    return loss[keep].mean()


def test_softmax_focal_is_true_softmax_focal_toolbelt_is_not():
    logits, target = multiclass_batch(ignore=True)
    reference = np_softmax_focal(logits.numpy(), target.numpy(), 2.0, ignore=IGNORE)
    ours = L.FocalLoss("multiclass", gamma=2.0, ignore_index=IGNORE)(logits, target)
    assert ours.item() == pytest.approx(reference, rel=1e-5)
    toolbelt = TB.CrossEntropyFocalLoss(gamma=2.0, ignore_index=IGNORE)(logits, target)
    assert toolbelt.item() != pytest.approx(reference, rel=0.05)  # sigmoid-BCE, not softmax CE
    alpha = [0.2, 0.5, 0.3]
    weighted = L.SoftmaxFocalLoss(alpha=alpha, ignore_index=IGNORE)(logits, target)
    assert weighted.item() == pytest.approx(
        np_softmax_focal(logits.numpy(), target.numpy(), 2.0, alpha, IGNORE), rel=1e-5
    )
    # gamma = 0: cross-entropy
    assert torch.allclose(
        L.SoftmaxFocalLoss(gamma=0.0, ignore_index=IGNORE)(logits, target),
        F.cross_entropy(logits, target, ignore_index=IGNORE),
        atol=1e-6,
    )


# ---------------------------------------------------------------------------- dice / jaccard
def np_overlap(probs, onehot, per_image, kind, smooth=0.0, eps=1e-7):
    axes = (2,) if per_image else (0, 2)
    inter = (probs * onehot).sum(axes)
    card = (probs + onehot).sum(axes)
    if kind == "dice":
        score = (2 * inter + smooth) / np.maximum(card + smooth, eps)
    else:
        score = (inter + smooth) / np.maximum(card - inter + smooth, eps)
    return (1 - score) * (onehot.sum(axes) > 0)


@pytest.mark.parametrize(
    "loss_cls, kind, toolbelt_cls",
    [(L.DiceLoss, "dice", TB.DiceLoss), (L.JaccardLoss, "jaccard", TB.JaccardLoss)],
)
def test_overlap_losses_match_toolbelt_and_numpy(loss_cls, kind, toolbelt_cls):
    logits, target = multiclass_batch()
    probs = np_softmax(logits.numpy().astype(np.float64)).reshape(2, 3, -1)
    onehot = np.eye(3)[target.numpy().reshape(2, -1)].transpose(0, 2, 1)
    for smooth in (0.0, 1.0):
        ours = loss_cls("multiclass", smooth=smooth)(logits, target)
        assert torch.allclose(
            ours, toolbelt_cls("multiclass", smooth=smooth)(logits, target), atol=1e-6
        )
        per_image = loss_cls("multiclass", smooth=smooth, per_image=True)(logits, target)
        reference = np_overlap(probs, onehot, True, kind, smooth).mean()
        assert per_image.item() == pytest.approx(reference, rel=1e-5)
    blogits, btarget = binary_batch()
    for mode in ("binary", "multilabel"):
        assert torch.allclose(
            loss_cls(mode)(blogits, btarget), toolbelt_cls(mode)(blogits, btarget), atol=1e-6
        )


@pytest.mark.parametrize("loss_cls, kind", [(L.DiceLoss, "dice"), (L.JaccardLoss, "jaccard")])
def test_log_loss_is_minus_log_of_the_soft_score(loss_cls, kind):
    """log_loss: -log(soft Dice) (-log(soft IoU)) per class, then the mean; by hand in numpy."""
    logits, target = multiclass_batch(seed=1)
    probs = np_softmax(logits.numpy().astype(np.float64)).reshape(2, 3, -1)
    onehot = np.eye(3)[target.numpy().reshape(2, -1)].transpose(0, 2, 1)
    for per_image in (False, True):
        axes = (2,) if per_image else (0, 2)
        inter, card = (probs * onehot).sum(axes), (probs + onehot).sum(axes)
        score = 2 * inter / card if kind == "dice" else inter / (card - inter)
        assert (onehot.sum(axes) > 0).all() and (
            score < 0.9
        ).all()  # every class present, far from perfect
        ours = loss_cls("multiclass", log_loss=True, per_image=per_image)(logits, target)
        assert ours.item() == pytest.approx(np.mean(-np.log(score)), rel=1e-5), per_image
    # binary: one global score over the batch
    blogits, btarget = binary_batch(seed=2)
    p, t = torch.sigmoid(blogits.double()), btarget.double()
    inter, card = (p * t).sum(), (p + t).sum()
    score = 2 * inter / card if kind == "dice" else inter / (card - inter)
    assert loss_cls("binary", log_loss=True)(blogits, btarget).item() == pytest.approx(
        -math.log(score.item()), rel=1e-5
    )


def test_dice_classes_as_list_toolbelt_raises():
    logits, target = multiclass_batch()
    # toolbelt's to_tensor turns a list into np.ndarray(SHAPE=[1, 2]): uninitialised memory,
    # so the loss raises IndexError or (when the garbage happens to be a valid index) is wrong
    broken = TB.DiceLoss("multiclass", classes=[1, 2])
    assert broken.classes.shape == (1, 2) and not torch.equal(
        broken.classes[0], torch.tensor([1, 2])
    )
    reference = TB.DiceLoss("multiclass", classes=torch.tensor([1, 2]))(logits, target)
    assert torch.allclose(L.DiceLoss("multiclass", classes=[1, 2])(logits, target), reference)
    assert torch.allclose(
        L.JaccardLoss("multiclass", classes=[1, 2])(logits, target),
        TB.JaccardLoss("multiclass", classes=torch.tensor([1, 2]))(logits, target),
    )


def test_dice_ignore_matches_toolbelt():
    logits, target = multiclass_batch(ignore=True)
    ours = L.DiceLoss("multiclass", ignore_index=IGNORE)(logits, target)
    assert torch.allclose(
        ours, TB.DiceLoss("multiclass", ignore_index=IGNORE)(logits, target), atol=1e-6
    )
    blogits, btarget = binary_batch(ignore=True)
    ours = L.DiceLoss("binary", ignore_index=IGNORE)(blogits, btarget)
    keep = btarget != IGNORE
    p, t = torch.sigmoid(blogits)[keep], btarget[keep]
    assert ours.item() == pytest.approx(
        1 - (2 * (p * t).sum() / (p.sum() + t.sum())).item(), rel=1e-5
    )


def test_dice_empty_mask_and_smooth():
    logits, _ = binary_batch()
    empty = torch.zeros_like(logits)
    value, grad = value_and_grad(L.DiceLoss("binary"), logits, empty)
    assert value == 0 and torch.isfinite(grad).all()  # toolbelt/smp: empty class skipped
    value, grad = value_and_grad(L.DiceLoss("binary", smooth=1.0, skip_empty=False), logits, empty)
    p = torch.sigmoid(logits).sum()
    assert value.item() == pytest.approx((1 - 1 / (p + 1)).item(), rel=1e-5)
    assert (grad > 0).all()  # pushes every logit down on an empty mask


# ---------------------------------------------------------------------------- lovasz
def np_lovasz_grad(gt_sorted):
    gts = gt_sorted.sum()
    inter = gts - np.cumsum(gt_sorted)
    union = gts + np.cumsum(1 - gt_sorted)
    jac = 1 - inter / union
    jac[1:] = jac[1:] - jac[:-1]
    return jac


def np_lovasz_softmax(probs, labels):  # probs P×C, labels P
    losses = []
    for c in range(probs.shape[1]):
        fg = (labels == c).astype(np.float64)
        if fg.sum() == 0:
            continue
        errors = np.abs(fg - probs[:, c])
        order = np.argsort(-errors, kind="stable")
        losses.append(np.dot(errors[order], np_lovasz_grad(fg[order])))
    return np.mean(losses)


def np_lovasz_hinge(logits, labels):
    errors = 1 - logits * (2 * labels - 1)
    order = np.argsort(-errors, kind="stable")
    return np.dot(np.maximum(errors[order], 0), np_lovasz_grad(labels[order]))


def test_lovasz_multiclass_takes_logits_toolbelt_takes_probabilities():
    logits, target = multiclass_batch()
    probs = np_softmax(logits.numpy().astype(np.float64)).transpose(0, 2, 3, 1).reshape(-1, 3)
    reference = np_lovasz_softmax(probs, target.numpy().reshape(-1))
    ours = L.LovaszLoss("multiclass")(logits, target)
    assert ours.item() == pytest.approx(reference, rel=1e-5)
    assert TB.LovaszLoss()(logits.softmax(1), target).item() == pytest.approx(reference, rel=1e-5)
    assert TB.LovaszLoss()(logits, target).item() != pytest.approx(reference, rel=0.05)  # defect
    per_image = L.LovaszLoss("multiclass", per_image=True)(logits, target)
    assert torch.allclose(
        per_image, TB.LovaszLoss(per_image=True)(logits.softmax(1), target), atol=1e-6
    )


def test_lovasz_binary_matches_toolbelt_hinge_and_numpy():
    logits, target = binary_batch(ignore=True)
    keep = (target != IGNORE).numpy().reshape(-1)
    reference = np_lovasz_hinge(
        logits.numpy().reshape(-1)[keep].astype(np.float64),
        target.numpy().reshape(-1)[keep].astype(np.float64),
    )
    ours = L.LovaszLoss("binary", ignore_index=IGNORE)(logits, target)
    assert ours.item() == pytest.approx(reference, rel=1e-5)
    for per_image in (False, True):
        ref = TB.BinaryLovaszLoss(per_image=per_image, ignore_index=IGNORE)(logits, target)
        assert torch.allclose(
            L.LovaszLoss("binary", per_image, IGNORE)(logits, target), ref, atol=1e-6
        )
    # multilabel: the binary hinge per channel, averaged
    ml_logits, ml_target = binary_batch(shape=(2, 3, 6, 6))
    per_channel = [
        L.LovaszLoss("binary")(ml_logits[:, c : c + 1], ml_target[:, c : c + 1]) for c in range(3)
    ]
    assert torch.allclose(
        L.LovaszLoss("multilabel")(ml_logits, ml_target), torch.stack(per_channel).mean()
    )


# ---------------------------------------------------------------------------- regression
def test_huber_smooth_l1_l1_with_ignore_value():
    g = gen(1)
    prediction, target = (
        torch.randn(2, 1, 8, 8, generator=g) * 3,
        torch.randn(2, 1, 8, 8, generator=g) * 3,
    )
    target_nan = target.clone()
    target_nan[0, 0, :4] = math.nan
    keep = ~torch.isnan(target_nan)
    cases = [
        (L.HuberLoss(delta=2.0), lambda p, t: F.huber_loss(p, t, delta=2.0)),
        (L.SmoothL1Loss(beta=0.5), lambda p, t: F.smooth_l1_loss(p, t, beta=0.5)),
        (L.L1Loss(), F.l1_loss),
    ]
    for loss, reference in cases:
        assert torch.allclose(loss(prediction, target), reference(prediction, target))
        loss.ignore_value = math.nan
        value, grad = value_and_grad(loss, prediction, target_nan)
        assert torch.allclose(value, reference(prediction[keep], target_nan[keep]))
        assert torch.isfinite(grad).all() and torch.all(grad[~keep] == 0)
    boxes = L.SmoothL1Loss(ignore_value=-1.0)
    assert torch.allclose(
        boxes(prediction, torch.where(keep, target, -1.0)),
        F.smooth_l1_loss(prediction[keep], target[keep]),
    )


def test_cosine_similarity_loss_and_geopose_stack():
    g = gen(2)
    prediction, target = torch.randn(4, 2, 5, 5, generator=g), torch.randn(4, 2, 5, 5, generator=g)
    p, t = prediction.numpy().astype(np.float64), target.numpy().astype(np.float64)
    cos = (p * t).sum(1) / np.linalg.norm(p, axis=1) / np.linalg.norm(t, axis=1)
    assert L.CosineSimilarityLoss()(prediction, target).item() == pytest.approx(
        (1 - cos).mean(), rel=1e-5
    )
    target[0, :, 0, 0] = 0
    zero_kept = L.CosineSimilarityLoss(ignore_zero=True)(prediction, target)
    mask = np.ones_like(cos, bool)
    mask[0, 0, 0] = False
    assert zero_kept.item() == pytest.approx((1 - cos)[mask].mean(), rel=1e-5)

    height, height_target = (
        torch.randn(2, 1, 6, 6, generator=g),
        torch.randn(2, 1, 6, 6, generator=g),
    )
    height_target[0, 0, 0] = math.nan
    mag, mag_target = torch.rand(2, 1, 6, 6, generator=g), torch.rand(2, 1, 6, 6, generator=g) * 3
    xydir, xydir_target = (
        torch.randn(2, 2, generator=g),
        F.normalize(torch.randn(2, 2, generator=g), dim=1),
    )
    stack = L.HuberCosLoss(
        height_weight=2.0,
        magnitude_weight=0.5,
        cosine_weight=3.0,
        direction_mse_weight=0.25,
        delta=1.0,
    )
    value = stack(
        height=height,
        height_target=height_target,
        magnitude=mag,
        magnitude_target=mag_target,
        direction=xydir,
        direction_target=xydir_target,
    )
    keep = ~torch.isnan(height_target)
    expected = (
        2.0 * F.huber_loss(height[keep], height_target[keep])
        + 0.5 * F.huber_loss(mag, mag_target)
        + 3.0 * (1 - F.cosine_similarity(xydir, xydir_target)).mean()
        + 0.25 * F.mse_loss(xydir, xydir_target)
    )
    assert torch.allclose(value, expected)
    assert set(stack.last_terms) == {"height", "magnitude", "cosine", "direction_mse"}


# ---------------------------------------------------------------------------- soft labels
def test_kl_div_and_soft_target_bce():
    g = gen(3)
    logits, teacher = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    q = teacher.softmax(1)
    ref = F.kl_div(F.log_softmax(logits, 1), q, reduction="batchmean")
    assert torch.allclose(L.KLDivLoss()(logits, q), ref)
    t = 2.0
    ref_t = (
        F.kl_div(F.log_softmax(logits / t, 1), (teacher / t).softmax(1), reduction="batchmean")
        * t
        * t
    )
    assert torch.allclose(
        L.KLDivLoss(temperature=t, target_logits=True)(logits, teacher), ref_t, atol=1e-6
    )
    maps, map_teacher = (
        torch.randn(2, 3, 4, 4, generator=g),
        torch.randn(2, 3, 4, 4, generator=g).softmax(1),
    )
    per_pixel = F.kl_div(F.log_softmax(maps, 1), map_teacher, reduction="none").sum(1).mean()
    assert torch.allclose(L.KLDivLoss()(maps, map_teacher), per_pixel)
    assert L.KLDivLoss()(logits, logits.softmax(1)).abs() < 1e-6  # identical distributions

    soft = torch.rand(2, 1, 4, 4, generator=g)
    blogits = torch.randn(2, 1, 4, 4, generator=g)
    assert torch.allclose(
        L.SoftTargetBCEWithLogitsLoss()(blogits, soft),
        F.binary_cross_entropy_with_logits(blogits, soft),
    )
    teacher_logits = torch.randn(2, 1, 4, 4, generator=g)
    assert torch.allclose(
        L.SoftTargetBCEWithLogitsLoss(target_logits=True)(blogits, teacher_logits),
        F.binary_cross_entropy_with_logits(blogits, torch.sigmoid(teacher_logits)),
    )


# ---------------------------------------------------------------------------- centernet
def test_centernet_focal_matches_numpy():
    g = gen(4)
    logits = torch.randn(2, 2, 8, 8, generator=g) * 2
    yy, xx = np.mgrid[:8, :8]
    heat = np.zeros((2, 2, 8, 8))
    for b, c, (y, x) in [(0, 0, (2, 3)), (0, 1, (5, 5)), (1, 0, (6, 1))]:
        heat[b, c] = np.maximum(heat[b, c], np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.0))
    x = logits.numpy().astype(np.float64)
    p = sigmoid(x)
    pos = heat == 1
    expected = (
        -(
            np.sum(((1 - p) ** 2 * np.log(p))[pos])
            + np.sum(((1 - heat) ** 4 * p**2 * np.log(1 - p))[~pos])
        )
        / pos.sum()
    )
    assert pos.sum() == 3
    value, grad = value_and_grad(
        L.CenterNetFocalLoss(), logits, torch.tensor(heat, dtype=torch.float32)
    )
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert torch.isfinite(grad).all()
    # no peak at all: normalised by 1, still finite
    value, grad = value_and_grad(L.CenterNetFocalLoss(), logits, torch.zeros_like(logits))
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    # extreme logits stay finite (logsigmoid, no clamping)
    value, grad = value_and_grad(
        L.CenterNetFocalLoss(), torch.full((1, 1, 2, 2), 80.0), torch.eye(2)[None, None]
    )
    assert torch.isfinite(value) and torch.isfinite(grad).all()


# --------------------------------------------------------------------------- edge cases, all losses
def segmentation_losses():
    return {
        "bce": (L.SoftBCEWithLogitsLoss(smooth_factor=0.05, ignore_index=IGNORE), "binary"),
        "focal": (L.FocalLoss("binary", alpha=0.25, ignore_index=IGNORE), "binary"),
        "dice": (L.DiceLoss("binary", ignore_index=IGNORE), "binary"),
        "jaccard_img": (L.JaccardLoss("binary", ignore_index=IGNORE, per_image=True), "binary"),
        "lovasz": (L.LovaszLoss("binary", ignore_index=IGNORE), "binary"),
        "soft_bce": (L.SoftTargetBCEWithLogitsLoss(ignore_index=IGNORE), "binary"),
        "ce": (L.CrossEntropyLoss(ignore_index=IGNORE), "multiclass"),
        "mc_focal": (L.FocalLoss("multiclass", ignore_index=IGNORE), "multiclass"),
        "mc_dice": (L.DiceLoss("multiclass", ignore_index=IGNORE, per_image=True), "multiclass"),
        "mc_lovasz": (
            L.LovaszLoss("multiclass", ignore_index=IGNORE, per_image=True),
            "multiclass",
        ),
    }


@pytest.mark.parametrize("name", list(segmentation_losses()))
def test_edge_cases_finite(name):
    loss, mode = segmentation_losses()[name]
    batch = binary_batch if mode == "binary" else multiclass_batch
    logits, target = batch(seed=5)
    value, grad = value_and_grad(loss, logits, target)
    assert torch.isfinite(value) and value > 0 and torch.isfinite(grad).all()
    # every pixel ignored: 0, with a finite (zero) gradient
    value, grad = value_and_grad(loss, logits, torch.full_like(target, IGNORE))
    assert value == 0 and torch.isfinite(grad).all() and torch.all(grad == 0), name
    # empty masks / one class present
    value, grad = value_and_grad(loss, logits, torch.zeros_like(target))
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    value, grad = value_and_grad(loss, logits, torch.ones_like(target))
    assert torch.isfinite(value) and torch.isfinite(grad).all()


# ---------------------------------------------------------------------------- config use
def test_misspelled_arguments_raise_podium_error_with_suggestion():
    with pytest.raises(PodiumError, match='"smoth".*did you mean "smooth"'):
        L.DiceLoss(mode="binary", smoth=1.0)
    with pytest.raises(PodiumError, match='did you mean "multiclass"'):
        L.FocalLoss(mode="multiclas")
    with pytest.raises(PodiumError, match="one weight per class"):
        L.FocalLoss(mode="multiclass", alpha=0.25)


def test_losses_build_from_yaml_targets():
    import hydra_slayer

    loss = hydra_slayer.get_from_params(
        _target_="podium.losses.FocalLoss", mode="multiclass", gamma=1.5
    )
    assert isinstance(loss, L.FocalLoss) and loss.gamma == 1.5
    # hydra-slayer wraps the constructor's error; the PodiumError is its cause
    with pytest.raises(RuntimeError) as error:
        hydra_slayer.get_from_params(
            _target_="podium.losses.DiceLoss", mode="binary", per_imag=True
        )
    assert isinstance(error.value.__cause__, PodiumError)
    assert 'did you mean "per_image"' in str(error.value.__cause__)
    assert not hasattr(TB, "JointLoss")  # gone from toolbelt: LossStackCallback replaces it
