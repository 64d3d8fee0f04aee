"""Synthetic Overhead-Geopose scenes: rendered oblique views of buildings with known height and
flow.

No Overhead Geopose data is available offline (no installed package ships any, and nothing
can be downloaded here), so this is a small deterministic generator with the same targets, to
train and test the whole task — model, huber-cos loss, grouped R2, D4 TTA — from YAML.

What a scene is (everything in image axes: x = column → right, y = row → down):

- a ground texture and a list of shapes (rotated rectangles = buildings, ellipses = trees), each
  with a height above ground in metres;
- one flow **direction** per image, the unit vector d = (sin θ, cos θ) = (x, y) — the Geopose
  `xydir` — and one **scale** s in pixels per metre: s = tan(off-nadir angle) / GSD;
- seen off-nadir, a point at height h appears shifted by −s·h·d from its footprint, i.e. the
  per-pixel flow s·h·d leads each pixel back to the ground: **magnitude = scale × height**
  (exactly, pixel by pixel). Walls show as the footprint swept from t = 0 to 1 (height t·h,
  darker), the roof at t = 1, occlusion by a height z-buffer;
- **shadows** on the ground, cast away from a random sun azimuth with a length of
  height / tan(sun elevation) / GSD pixels (elevation range per city): with the GSD as an input,
  shadow length is a cue to height in metres, as on real images;
- **missing heights** (lidar gaps): some rectangles of the height target are NaN (`IGNORE`),
  so are the magnitudes there; the image is complete;
- a **city** per scene (group of the Geopose metric), each with its own style: ground colour,
  density, heights, GSD and off-nadir range; the GSD (metres per pixel) is also an input.

Shapes are rasterised by pixel-centre tests of the exact geometry, so a flipped / rotated scene
renders as the flip / rotation of the rendering (tested for the 8 D4 views).

Augmentation keeps the targets right for any *similarity* transform (D4, rotations, flips,
crops, uniform scaling): three keypoints (a centre and two axis steps) ride through the
albumentations pipeline, so the transform's linear part — hence the new direction — is
measured, not assumed; height and magnitude go as masks, and
a zoom z multiplies magnitude and scale by z (pixels per metre) and divides the GSD by z.
A transform that is not a similarity (e.g. a non-uniform resize) is refused.

Per sample: `image` 3×S×S (normalised), `gsd` (1,), `height_target` 1×S×S (NaN = missing),
`magnitude_target` 1×S×S, `direction_target` (2,), `scale_target` (1,), `city`, `name`.
"""

import math
from collections import OrderedDict
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from podium.datasets.normalize import IMAGENET_NORMALIZE, build_normalizer
from podium.datasets.transforms import build_transforms_with
from podium.errors import PodiumError, did_you_mean
from podium.validation import check_int, check_number, check_subset

__all__ = [
    "CITIES",
    "CityStyle",
    "IGNORE",
    "Shape",
    "SceneGeometry",
    "SyntheticGeoposeScenes",
    "augment_sample",
    "build_geopose_datasets",
    "render_scene",
    "sample_geometry",
]

IGNORE = float("nan")
SPLITS = ("train", "valid")


# ---------------------------------------------------------------- scene geometry and rendering


class CityStyle(NamedTuple):
    ground: Tuple[float, float, float]  # mean RGB of the ground
    roofs: Tuple[Tuple[float, float, float], ...]  # roof palette
    buildings: Tuple[int, int]  # count range per scene
    footprint_m: Tuple[float, float]  # building side, metres
    height_m: Tuple[float, float]  # building height, metres
    trees: Tuple[int, int]  # count range per scene
    gsd: Tuple[float, float]  # metres per pixel
    off_nadir_deg: Tuple[float, float]
    sun_elevation_deg: Tuple[float, float]  # shadow length = height / tan(elevation)


# Four styles named after the Geopose cities (Buenos Aires, Atlanta, Jacksonville, Omaha); the
# names are labels for the groups, not a claim that the scenes look like those cities.
CITIES: Dict[str, CityStyle] = {
    "ARG": CityStyle(
        (128, 124, 118),
        ((170, 90, 70), (150, 150, 150), (190, 180, 160)),
        (6, 10),
        (8.0, 16.0),
        (6.0, 24.0),
        (0, 2),
        (1.1, 1.5),
        (20.0, 38.0),
        (50.0, 60.0),
    ),
    "ATL": CityStyle(
        (110, 120, 100),
        ((90, 90, 95), (200, 200, 205), (120, 110, 100)),
        (2, 5),
        (10.0, 24.0),
        (8.0, 24.0),
        (3, 7),
        (0.9, 1.2),
        (18.0, 32.0),
        (55.0, 65.0),
    ),
    "JAX": CityStyle(
        (120, 130, 90),
        ((160, 140, 120), (110, 100, 95), (210, 200, 190)),
        (3, 7),
        (7.0, 12.0),
        (3.0, 9.0),
        (4, 9),
        (0.9, 1.2),
        (22.0, 40.0),
        (60.0, 70.0),
    ),
    "OMA": CityStyle(
        (140, 135, 125),
        ((210, 210, 215), (100, 100, 105), (170, 160, 140)),
        (2, 4),
        (12.0, 26.0),
        (4.0, 14.0),
        (1, 4),
        (1.0, 1.4),
        (20.0, 36.0),
        (45.0, 55.0),
    ),
}
TREE_COLOUR = (60, 95, 50)
TREE_HEIGHT_M = (3.0, 12.0)
SHADOW_DARKENING = 0.55


class Shape(NamedTuple):
    centre: np.ndarray  # (x, y) of the footprint centre, pixel-edge coordinates
    axis: np.ndarray  # unit vector of the first half-size (the second is perpendicular)
    half: np.ndarray  # half sizes along axis and its perpendicular, pixels
    height: float  # metres above ground
    wall: np.ndarray  # RGB of the walls (trunk/crown side for trees)
    roof: np.ndarray  # RGB of the roof (crown)
    round: bool  # ellipse (tree) instead of rectangle


class SceneGeometry(NamedTuple):
    size: int
    ground: np.ndarray  # S×S×3 float32 ground colour field
    grain: np.ndarray  # S×S×3 float32 sensor noise added last
    shapes: List[Shape]
    direction: np.ndarray  # (2,) unit flow direction (sin θ, cos θ)
    scale: float  # pixels per metre
    gsd: float  # metres per pixel
    missing: np.ndarray  # S×S bool: height unknown there
    shadow: (
        np.ndarray
    )  # (2,) ground shift of a shadow per metre of height, pixels (away from the sun)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
    import cv2

    coarse = rng.standard_normal((cells, cells, channels)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).reshape(
        size, size, channels
    )


def sample_geometry(
    rng: np.random.Generator, size: int, style: CityStyle, missing_prob: float
) -> SceneGeometry:
    """A random scene of one city style (all randomness drawn from `rng`)."""
    gsd = float(rng.uniform(*style.gsd))
    scale = math.tan(math.radians(rng.uniform(*style.off_nadir_deg))) / gsd
    theta = rng.uniform(0.0, 2 * math.pi)
    direction = np.array([math.sin(theta), math.cos(theta)])
    sun_azimuth = rng.uniform(0.0, 2 * math.pi)
    shadow = (
        np.array([math.sin(sun_azimuth), math.cos(sun_azimuth)])
        / math.tan(math.radians(rng.uniform(*style.sun_elevation_deg)))
        / gsd
    )
    ground = (
        np.asarray(style.ground, np.float32)
        + 12.0 * _smooth_noise(rng, size, 4, 1)
        + 6.0 * _smooth_noise(rng, size, 3, 3)
    )
    grain = (4.0 * rng.standard_normal((size, size, 3))).astype(np.float32)
    shapes = []
    for _ in range(int(rng.integers(style.buildings[0], style.buildings[1] + 1))):
        half = rng.uniform(*style.footprint_m, size=2) / gsd / 2
        angle = rng.uniform(0, math.pi) if rng.random() < 0.5 else rng.choice([0.0, math.pi / 2])
        roof = np.asarray(
            style.roofs[int(rng.integers(len(style.roofs)))], np.float64
        ) + rng.normal(0, 10, 3)
        shapes.append(
            Shape(
                rng.uniform(0, size, 2),
                np.array([math.cos(angle), math.sin(angle)]),
                half,
                float(rng.uniform(*style.height_m)),
                roof * 0.55,
                roof,
                False,
            )
        )
    for _ in range(int(rng.integers(style.trees[0], style.trees[1] + 1))):
        radius = rng.uniform(2.0, 4.5) / gsd
        crown = np.asarray(TREE_COLOUR, np.float64) + rng.normal(0, 8, 3)
        shapes.append(
            Shape(
                rng.uniform(0, size, 2),
                np.array([1.0, 0.0]),
                np.array([radius, radius]),
                float(rng.uniform(*TREE_HEIGHT_M)),
                crown * 0.6,
                crown,
                True,
            )
        )
    missing = np.zeros((size, size), bool)
    if rng.random() < missing_prob:
        for _ in range(int(rng.integers(1, 3))):
            w, h = rng.integers(size // 8, size // 3, size=2)
            x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
            missing[y0 : y0 + h, x0 : x0 + w] = True
    return SceneGeometry(
        size,
        ground.astype(np.float32),
        grain,
        shapes,
        direction,
        float(scale),
        gsd,
        missing,
        shadow,
    )


def _inside(shape: Shape, centre: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    u = shape.axis
    dx, dy = xs - centre[0], ys - centre[1]
    a = (dx * u[0] + dy * u[1]) / shape.half[0]
    b = (-dx * u[1] + dy * u[0]) / shape.half[1]
    if shape.round:
        return a * a + b * b <= 1.0
    return (np.abs(a) <= 1.0) & (np.abs(b) <= 1.0)


def _sweep(shape: Shape, lean: np.ndarray, size: int):
    """(t, rows, cols, inside) of the shape's footprint moved by t·lean, t from 0 to 1 at half-pixel
    steps."""
    centres = np.arange(size) + 0.5
    reach = float(np.abs(shape.half).max()) + 1.0
    steps = max(2, int(math.ceil(2 * float(np.hypot(*lean)))) + 1)
    for t in np.linspace(0.0, 1.0, steps):
        centre = shape.centre + t * lean
        x0, x1 = max(0, int(centre[0] - reach)), min(size, int(centre[0] + reach) + 1)
        y0, y1 = max(0, int(centre[1] - reach)), min(size, int(centre[1] + reach) + 1)
        if x0 < x1 and y0 < y1:
            xs, ys = np.meshgrid(centres[x0:x1], centres[y0:y1])
            yield t, slice(y0, y1), slice(x0, x1), _inside(shape, centre, xs, ys)


def render_scene(geometry: SceneGeometry) -> Tuple[np.ndarray, np.ndarray]:
    """(image S×S×3 uint8, height S×S float32 metres with NaN where missing) of a scene.

    Ground, then cast shadows (the footprints swept away from the sun, darkening the ground),
    then every shape swept towards its leaning roof with a height z-buffer (walls, then roof).
    """
    size = geometry.size
    image = geometry.ground.astype(np.float64).copy()
    shadow = np.zeros((size, size), bool)
    for shape in geometry.shapes:
        for _, rows, cols, inside in _sweep(shape, shape.height * geometry.shadow, size):
            shadow[rows, cols] |= inside
    image[shadow] *= SHADOW_DARKENING
    height = np.zeros((size, size), np.float64)
    for shape in geometry.shapes:
        lean = -shape.height * geometry.scale * geometry.direction  # roofs lean against the flow
        for t, rows, cols, inside in _sweep(shape, lean, size):
            z = t * shape.height
            write = inside & (z >= height[rows, cols])
            height[rows, cols][write] = z
            image[rows, cols][write] = shape.roof if t == 1.0 else shape.wall * (0.7 + 0.3 * t)
    image = np.clip(image + geometry.grain, 0, 255).round().astype(np.uint8)
    height = height.astype(np.float32)
    height[geometry.missing] = IGNORE
    return image, height


# ---------------------------------------------------------------- augmentation


def augment_sample(
    transforms: Optional[A.Compose],
    image: np.ndarray,
    height: np.ndarray,
    magnitude: np.ndarray,
    direction: np.ndarray,
    scale: float,
    gsd: float,
) -> Tuple:
    """Run the pipeline on image + height/magnitude masks and carry direction, scale and GSD along.

    The direction goes through as keypoints (centre, centre + r·e_x, centre + r·e_y): their moved
    differences are the transform's linear part L, so direction ← L·d / |L·d|; a zoom z = √|det L|
    multiplies magnitude and scale by z and divides the GSD by z. Returns the same tuple, moved.
    """
    if transforms is None:
        return image, height, magnitude, direction, scale, gsd
    size = image.shape[0]
    radius = size / 4.0
    centre = np.array([image.shape[1] / 2.0, size / 2.0])
    keypoints = np.stack([centre, centre + [radius, 0.0], centre + [0.0, radius]]).astype(
        np.float32
    )
    out = transforms(image=image, masks=[height, magnitude], keypoints=keypoints)
    moved = np.asarray(out["keypoints"], np.float64)[:, :2]
    linear = (
        np.stack([moved[1] - moved[0], moved[2] - moved[0]], axis=1) / radius
    )  # columns: L·e_x, L·e_y
    zoom = math.sqrt(abs(float(np.linalg.det(linear))))
    gram = linear.T @ linear
    if zoom < 1e-6 or not np.allclose(
        gram, zoom * zoom * np.eye(2), rtol=0, atol=2e-3 * max(1.0, zoom * zoom)
    ):
        raise PodiumError(
            "data transforms: geopose targets need similarity transforms "
            "(flips, D4, rotations, crops, uniform scaling); "
            f"the pipeline applied a linear map {np.round(linear, 3).tolist()}, "
            "which is not one (e.g. a non-uniform resize or shear)"
        )
    moved_direction = linear @ np.asarray(direction, np.float64)
    moved_direction /= np.linalg.norm(moved_direction)
    height, magnitude = out["masks"]
    return (
        out["image"],
        height,
        magnitude * np.float32(zoom),
        moved_direction,
        scale * zoom,
        gsd / zoom,
    )


# ---------------------------------------------------------------- dataset and builder


class SyntheticGeoposeScenes(Dataset):
    """`count` scenes of `image_size`² pixels, scene i of city cities[i % len(cities)].

    Deterministic: scene i is drawn from numpy's SeedSequence([seed, split, i]), so the same
    arguments give the same scenes in any process (augmentations are seeded by the runner).
    """

    def __init__(
        self,
        count: int,
        image_size: int = 64,
        cities: Sequence[str] = tuple(CITIES),
        seed: int = 0,
        split: str = "train",
        missing_prob: float = 0.3,
        normalize=None,
        transforms=None,
    ):
        self.count, self.image_size, self.cities = int(count), int(image_size), list(cities)
        self.seed, self.split, self.missing_prob = int(seed), split, float(missing_prob)
        self.normalizer = build_normalizer(normalize, default=IMAGENET_NORMALIZE)
        self.transforms = build_transforms_with(
            transforms, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False)
        )

    def __len__(self) -> int:
        return self.count

    def city(self, index: int) -> str:
        return self.cities[index % len(self.cities)]

    def name(self, index: int) -> str:
        return f"{self.city(index)}_{self.split}_{index:05d}"

    def geometry(self, index: int) -> SceneGeometry:
        if not 0 <= index < self.count:
            raise IndexError(index)
        entropy = [self.seed, SPLITS.index(self.split) if self.split in SPLITS else 2, index]
        rng = np.random.default_rng(np.random.SeedSequence(entropy))
        return sample_geometry(rng, self.image_size, CITIES[self.city(index)], self.missing_prob)

    def __getitem__(self, index: int) -> Dict[str, object]:
        geometry = self.geometry(index)
        image, height = render_scene(geometry)
        magnitude = (height * np.float32(geometry.scale)).astype(np.float32)
        image, height, magnitude, direction, scale, gsd = augment_sample(
            self.transforms,
            self.normalizer.scale(image),
            height,
            magnitude,
            geometry.direction,
            geometry.scale,
            geometry.gsd,
        )
        standardized = self.normalizer.standardize(image)
        return {  # `image` first: Catalyst takes the batch size from the first key
            "image": torch.from_numpy(
                np.ascontiguousarray(standardized.transpose(2, 0, 1), np.float32)
            ),
            "gsd": torch.tensor([gsd], dtype=torch.float32),
            "height_target": torch.from_numpy(np.ascontiguousarray(height, np.float32)[None]),
            "magnitude_target": torch.from_numpy(np.ascontiguousarray(magnitude, np.float32)[None]),
            "direction_target": torch.as_tensor(direction, dtype=torch.float32),
            "scale_target": torch.tensor([scale], dtype=torch.float32),
            "city": self.city(index),
            "name": self.name(index),
        }


def build_geopose_datasets(
    image_size: int = 64,
    num_train: int = 256,
    num_valid: int = 64,
    cities: Sequence[str] = tuple(CITIES),
    seed: int = 0,
    missing_prob: float = 0.3,
    normalize=None,
    train_transforms=None,
    valid_transforms=None,
    splits: Sequence[str] = SPLITS,
) -> "OrderedDict[str, SyntheticGeoposeScenes]":
    """{"train", "valid"} synthetic Geopose scenes (`data: {_target_: ...}` builder).

    image_size: side in pixels (≥ 32). num_train / num_valid: scenes per split (each split has
    its own random stream, so no scene is in both). cities: styles from `CITIES`, assigned in
    turn (every city in every split with ≥ len(cities) scenes). missing_prob: share of scenes
    with NaN height gaps. Transforms: albumentations from YAML; geometric ones must be
    similarities (the targets follow them, see `augment_sample`).
    """
    check_int(image_size, "data image_size", 32)
    counts = {"train": num_train, "valid": num_valid}
    for split, count in counts.items():
        check_int(count, f"data num_{split}", 1)
    if isinstance(cities, str) or not cities or len(set(cities)) != len(cities):
        raise PodiumError(
            f"data cities must be a list of distinct names from {list(CITIES)}, got {cities!r}"
        )
    for city in cities:
        if city not in CITIES:
            raise PodiumError(
                f'data cities: unknown city "{city}"{did_you_mean(city, CITIES)}; '
                f"expected some of: {', '.join(CITIES)}"
            )
    check_number(missing_prob, "data missing_prob", "[0, 1]")
    splits = check_subset(splits, SPLITS, "data splits")
    transforms = {"train": train_transforms, "valid": valid_transforms}
    return OrderedDict(
        (
            split,
            SyntheticGeoposeScenes(
                counts[split],
                image_size,
                list(cities),
                int(seed),
                split,
                float(missing_prob),
                normalize,
                transforms[split],
            ),
        )
        for split in SPLITS
        if split in splits
    )
