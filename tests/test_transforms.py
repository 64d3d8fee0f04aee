"""Augmentations: compact-form coverage (albumentations 2.0.8 names), presets, podium's own
transforms (PositiveCrop, RandomScaleCrop, Letterbox), serialisation and seeded workers."""

import warnings

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from podium.datasets.crops import PositiveCrop, RandomScaleCrop
from podium.datasets.letterbox import Letterbox, letterbox, letterbox_meta, unletterbox
from podium.datasets.presets import PRESETS
from podium.datasets.transforms import (
    build_transforms,
    seed_transforms,
    transforms_to_dict,
    worker_init_fn,
)
from podium.errors import PodiumError

RNG = np.random.default_rng(0)


def _sample(height=48, width=64, channels=1):
    image = RNG.random((height, width, channels)).astype(np.float32)
    mask = np.zeros((height, width), np.uint8)
    mask[10:20, 12:30] = 1
    return image, mask


def _run_quietly(compose, image, mask):
    """Apply without any albumentations warning (a warning means a wrong/deprecated argument)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return compose(image=image, mask=mask)


# ---------------------------------------------------------------- compact-form coverage
COVERAGE = [
    ({"D4": {}}, 1),
    ({"HorizontalFlip": {"p": 0.5}}, 1),
    ({"VerticalFlip": {"p": 0.5}}, 1),
    ({"Transpose": {"p": 0.5}}, 1),
    ({"RandomRotate90": {"p": 1.0}}, 1),
    (
        {
            "Affine": {
                "scale": [0.9, 1.1],
                "translate_percent": [-0.05, 0.05],
                "rotate": [-15, 15],
                "shear": [-5, 5],
                "p": 1.0,
            }
        },
        1,
    ),
    (
        {
            "ShiftScaleRotate": {
                "shift_limit": 0.05,
                "scale_limit": 0.1,
                "rotate_limit": 15,
                "p": 1.0,
            }
        },
        1,
    ),
    ({"ElasticTransform": {"alpha": 30, "sigma": 6, "p": 1.0}}, 1),
    ({"GridDistortion": {"distort_limit": 0.2, "p": 1.0}}, 1),
    ({"RandomBrightnessContrast": {"brightness_limit": 0.2, "contrast_limit": 0.2, "p": 1.0}}, 1),
    ({"RandomGamma": {"gamma_limit": [80, 120], "p": 1.0}}, 1),
    (
        {
            "HueSaturationValue": {
                "hue_shift_limit": 10,
                "sat_shift_limit": 20,
                "val_shift_limit": 10,
                "p": 1.0,
            }
        },
        3,
    ),
    (
        {
            "ColorJitter": {
                "brightness": 0.2,
                "contrast": 0.2,
                "saturation": 0.2,
                "hue": 0.05,
                "p": 1.0,
            }
        },
        3,
    ),
    ({"GaussNoise": {"std_range": [0.01, 0.05], "p": 1.0}}, 1),
    ({"GaussianBlur": {"blur_limit": [3, 5], "p": 1.0}}, 1),
    ({"MotionBlur": {"blur_limit": [3, 7], "p": 1.0}}, 1),
    (
        {
            "CoarseDropout": {
                "num_holes_range": [1, 3],
                "hole_height_range": [0.1, 0.2],
                "hole_width_range": [0.1, 0.2],
                "p": 1.0,
            }
        },
        1,
    ),
    ({"RandomCrop": {"height": 32, "width": 32}}, 1),
    ({"RandomCrop": {"height": 96, "width": 96, "pad_if_needed": True}}, 1),
    ({"CenterCrop": {"height": 32, "width": 32}}, 1),
    ({"RandomResizedCrop": {"size": [32, 32], "scale": [0.5, 1.0]}}, 1),
    ({"CropNonEmptyMaskIfExists": {"height": 32, "width": 32}}, 1),
    ({"PadIfNeeded": {"min_height": 64, "min_width": 96, "border_mode": 0}}, 1),
    ({"LongestMaxSize": {"max_size": 32}}, 1),
    ({"RandomScale": {"scale_limit": [-0.2, 0.2], "p": 1.0}}, 1),
    (
        {
            "OneOf": {
                "p": 1.0,
                "transforms": [{"GaussianBlur": {}}, {"GaussNoise": {"std_range": [0.01, 0.02]}}],
            }
        },
        1,
    ),
]


@pytest.mark.parametrize("item, channels", COVERAGE, ids=[next(iter(i)) for i, _ in COVERAGE])
def test_compact_form_covers_common_augmentations(item, channels):
    compose = build_transforms([item])
    image, mask = _sample(channels=channels)
    out = _run_quietly(compose, image, mask)
    assert out["image"].dtype == np.float32 and out["image"].shape[-1] == channels
    assert out["image"].shape[:2] == out["mask"].shape[:2]
    assert set(np.unique(out["mask"])) <= {0, 1}  # masks stay labels (nearest)
    assert transforms_to_dict(build_transforms(transforms_to_dict(compose))) == transforms_to_dict(
        compose
    )


# ---------------------------------------------------------------- presets
@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("size", [None, 40])
def test_presets_build_and_run_on_1_and_3_channels(name, size):
    compose = build_transforms({"preset": name, "size": size})
    seed_transforms(compose, 0)
    for channels in (1, 3):
        image, mask = _sample(channels=channels)
        for _ in range(4):
            out = _run_quietly(compose, image, mask)
            assert out["image"].dtype == np.float32 and out["image"].shape[-1] == channels
            if size:
                assert out["image"].shape[:2] == (40, 40) and out["mask"].shape == (40, 40)


def test_preset_overrides_append_and_list_entry():
    compose = build_transforms(
        {
            "preset": "medium",
            "overrides": {"RandomBrightnessContrast": {"p": 0.9}, "GaussNoise": None},
            "append": [{"CoarseDropout": {"p": 0.5}}],
        }
    )
    names = [type(t).__name__ for t in compose.transforms]
    assert names[-1] == "CoarseDropout"
    rbc = next(t for t in compose.transforms if isinstance(t, A.RandomBrightnessContrast))
    assert rbc.p == 0.9 and rbc.brightness_limit == (-0.2, 0.2)  # merged, not replaced
    one_of = next(t for t in compose.transforms if isinstance(t, A.OneOf))
    assert [type(t).__name__ for t in one_of.transforms] == ["GaussianBlur"]  # removed inside OneOf
    in_list = build_transforms([{"PositiveCrop": {"height": 32, "width": 32}}, {"preset": "d4"}])
    assert [type(t).__name__ for t in in_list.transforms] == ["PositiveCrop", "D4"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"preset": "meduim"}, 'unknown augmentation preset "meduim".*did you mean "medium"'),
        ({"preset": "light", "sise": 64}, 'unknown key "sise".*did you mean "size"'),
        (
            {"preset": "light", "overrides": {"GausNoise": None}},
            "no such transform.*HorizontalFlip",
        ),
        ({"preset": "d4", "size": "big"}, "size of preset d4 must be"),
        (
            [{"PositiveCrop": {"height": 32, "width": 32, "positive_p": 2}}],
            "PositiveCrop.*positive_p must be a probability",
        ),
        (
            [{"PositiveCrop": {"height": 32, "widht": 32}}],
            'unknown argument "widht".*did you mean "width"',
        ),
        ([{"PositivCrop": {}}], 'did you mean "PositiveCrop"'),
    ],
)
def test_preset_and_podium_transform_errors(spec, message):
    with pytest.raises(PodiumError, match=message):
        build_transforms(spec)


# ------------------------------------------------------------ podium transforms by name, serialised
def test_podium_transforms_by_name_and_serialisation():
    compose = build_transforms(
        [
            {"PositiveCrop": {"height": 24, "width": 24, "positive_p": 0.5}},
            {"RandomScaleCrop": {"height": 16, "width": 16, "scale_range": [0.5, 2.0]}},
            {"Letterbox": {"height": 20, "width": 20}},
        ]
    )
    assert [type(t) for t in compose.transforms] == [PositiveCrop, RandomScaleCrop, Letterbox]
    saved = transforms_to_dict(compose)
    assert (
        saved["transform"]["transforms"][0]["__class_fullname__"]
        == "podium.datasets.crops.PositiveCrop"
    )
    assert saved["transform"]["transforms"][0]["positive_p"] == 0.5
    assert transforms_to_dict(build_transforms(saved)) == saved
    assert transforms_to_dict(A.from_dict(saved)) == saved
    out = compose(image=_sample()[0], mask=_sample()[1])
    assert out["image"].shape == (20, 20, 1)


# ---------------------------------------------------------------- PositiveCrop
def _fraction_with_positives(positive_p, trials=300):
    mask = np.zeros((256, 256), np.uint8)
    mask[200:206, 30:36] = 1  # one small object: a uniform 32² crop rarely sees it
    image = np.zeros((256, 256, 1), np.float32)
    compose = A.Compose([PositiveCrop(32, 32, positive_p=positive_p)])
    seed_transforms(compose, 1)
    hits = [compose(image=image, mask=mask)["mask"].any() for _ in range(trials)]
    return float(np.mean(hits))


def test_positive_crop_oversamples_foreground():
    low, mid, high = (_fraction_with_positives(p) for p in (0.0, 0.5, 1.0))
    assert low < 0.1 and 0.35 < mid < 0.7 and high == 1.0
    assert low < mid < high


def test_positive_crop_without_foreground_and_small_images():
    compose = A.Compose([PositiveCrop(32, 32, positive_p=1.0)])
    out = compose(image=np.ones((20, 50, 2), np.float32), mask=np.zeros((20, 50), np.uint8))
    assert out["image"].shape == (32, 32, 2) and out["mask"].shape == (32, 32)
    assert out["image"][:6].sum() == 0  # padded rows are `fill`


# ---------------------------------------------------------------- multi-scale
def test_random_scale_crop_output_size_constant():
    compose = build_transforms(
        [
            {
                "RandomScaleCrop": {
                    "height": 48,
                    "width": 40,
                    "scale_range": [0.5, 2.0],
                    "positive_p": 0.5,
                }
            }
        ]
    )
    seed_transforms(compose, 2)
    scales_seen = set()
    for height, width in [(30, 30), (64, 100), (200, 80), (48, 40)]:
        image, mask = _sample(height, width, channels=3)
        for _ in range(5):
            out = compose(image=image, mask=mask)
            assert out["image"].shape == (48, 40, 3) and out["mask"].shape == (48, 40)
            assert set(np.unique(out["mask"])) <= {0, 1}
            scales_seen.add(round(compose.transforms[0].params["window"][2] / 48, 2))
    assert len(scales_seen) > 5  # really multi-scale


def test_random_scale_crop_batches_stack():
    ds = _ToyDataset(
        build_transforms([{"RandomScaleCrop": {"height": 32, "width": 32}}]),
        sizes=[(40, 50), (70, 30), (32, 32)],
    )
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch.shape == (3, 1, 32, 32)


# ---------------------------------------------------------------- letterbox
@pytest.mark.parametrize(
    "shape",
    [(60, 100), (100, 60), (33, 77), (64, 64)],
    ids=["horizontal", "vertical", "odd", "square"],
)
@pytest.mark.parametrize("size", [128, 48])
def test_unletterbox_restores_geometry(shape, size):
    height, width = shape
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, (width // 2, height // 2), min(shape) // 3, 1, -1)
    mask[2:10, 2:12] = 2
    boxed, meta = letterbox(mask, size, interpolation=cv2.INTER_NEAREST_EXACT)
    assert boxed.shape == (size, size) and boxed.dtype == np.uint8
    top, bottom, left, right = meta["pad"]
    assert (top + bottom == 0) or (left + right == 0)  # padding only along the short side
    assert boxed[:top].sum() == 0 and boxed[size - bottom :].sum() == 0
    back = unletterbox(boxed, meta)
    assert (
        back.shape == shape and back.dtype == np.uint8 and set(np.unique(back)) <= {0, 1, 2}
    )  # nearest
    iou = ((back == 1) & (mask == 1)).sum() / ((back == 1) | (mask == 1)).sum()
    assert iou > (0.97 if size > max(shape) else 0.85)

    image = np.dstack([mask, mask]).astype(np.float32)
    boxed_image, meta2 = letterbox(image, size)
    assert meta2 == meta and boxed_image.shape == (size, size, 2)
    probs = torch.from_numpy(np.moveaxis(boxed_image, -1, 0))  # C×H×W model output
    back_probs = unletterbox(probs, meta, channels_first=True)
    assert back_probs.shape == (2, height, width) and back_probs.dtype == np.float32
    assert letterbox_meta(shape, size) == meta


def test_letterbox_transform_matches_function_and_errors():
    image, mask = _sample(30, 70, channels=3)
    out = A.Compose([Letterbox(64, 64)])(image=image, mask=mask)
    expected_image, meta = letterbox(image, 64)
    expected_mask, _ = letterbox(mask, 64, interpolation=cv2.INTER_NEAREST_EXACT)
    np.testing.assert_array_equal(out["image"], expected_image)
    np.testing.assert_array_equal(out["mask"], expected_mask)
    with pytest.raises(PodiumError, match="letterbox size was 64×64"):
        unletterbox(np.zeros((32, 32)), meta)
    with pytest.raises(PodiumError, match="letterbox size must be"):
        letterbox(image, "big")


# ---------------------------------------------------------------- seeded workers
class _ToyDataset(Dataset):
    def __init__(self, transforms, sizes=None, count=8):
        self.transforms = transforms
        self.sizes = sizes or [(24, 24)] * count

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, index):
        height, width = self.sizes[index]
        image = np.arange(height * width, dtype=np.float32).reshape(height, width, 1) / (
            height * width
        )
        out = self.transforms(image=image, mask=np.zeros((height, width), np.uint8))
        return torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1)))


def _batches(seed, worker_init=worker_init_fn, epochs=2):
    dataset = _ToyDataset(
        build_transforms([{"D4": {}}, {"RandomBrightnessContrast": {"p": 1.0}}]), count=8
    )
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=2,
        num_workers=2,
        shuffle=True,
        generator=generator,
        worker_init_fn=worker_init,
    )
    return [torch.cat(list(loader)) for _ in range(epochs)]


def test_seeded_workers_reproducible_and_distinct():
    first, again, other = _batches(7), _batches(7), _batches(8)
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)  # same seed → same augmented batches
    assert not torch.equal(first[0], other[0])  # another seed → other augmentations
    assert not torch.equal(first[0], first[1])  # epochs differ
    # every item is the same image, so only augmentation differs; worker 0 makes batch 0, worker 1
    # batch 1
    assert not torch.equal(first[0][0:2], first[0][2:4])


def test_without_reseeding_workers_replay_one_stream():
    """Why worker_init_fn exists: albumentations 2 ignores global seeds, so both workers (and every
    epoch) replay the pipeline's copied random state."""
    plain = _batches(7, worker_init=None)
    assert torch.equal(plain[0][0:2], plain[0][2:4]) and torch.equal(plain[0], plain[1])


# ---------------------------------------------------------------- through the dataset builder
def test_preset_and_stats_normalisation_through_the_builder(tmp_path):
    from podium.datasets.builder import build_segmentation_datasets
    from podium.datasets.stats import compute_stats, write_stats

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rows = ["name,split"]
    for i in range(4):
        cv2.imwrite(
            str(tmp_path / "images" / f"a{i}.png"), (RNG.random((20, 30)) * 4000).astype(np.uint16)
        )
        cv2.imwrite(
            str(tmp_path / "masks" / f"a{i}.png"),
            (RNG.random((20, 30)) > 0.7).astype(np.uint8) * 255,
        )
        rows.append(f"a{i},{'train' if i < 3 else 'valid'}")
    (tmp_path / "split.csv").write_text("\n".join(rows) + "\n")
    write_stats(compute_stats(tmp_path, max_value=4095, progress=False), tmp_path / "stats.json")
    datasets = build_segmentation_datasets(
        tmp_path,
        normalize={"mode": "stats", "path": str(tmp_path / "stats.json")},
        train_transforms={"preset": "hard", "size": 16},
        valid_transforms={"preset": "d4"},
    )
    item = datasets["train"][0]
    assert item["image"].shape == (1, 16, 16) and item["mask"].shape == (1, 16, 16)
    assert datasets["valid"][0]["image"].shape in ((1, 20, 30), (1, 30, 20))  # D4 may transpose
