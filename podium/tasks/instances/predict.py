"""`podium predict` writer for instances: label maps, polygons and object F1 / AP per image.

    writers:                       # in an inference YAML (configs/nuclei/infer_instances.yml)
      - _target_: podium.tasks.instances.predict.InstanceWriter
        method: watershed          # watershed (body/border/contact) | components (one channel)
        seed_threshold: 0.7        # t: seeds where body·(1 − contact)·(1 − border) > t
        mask_threshold: 0.5        # t2: objects grow within body > t2
        min_size: 0                # drop objects of fewer pixels
        format: png                # png: uint16 ids (≤ 65535 objects) | tif: uint32 ids
        polygons: true             # polygons/NAME.geojson, one feature per object (pixel coords)
        truth_dir: instances       # DATA_ROOT/instances/NAME.png: true ids, for F1 / AP (if there)

Files: instances/NAME.png (or .tif), polygons/NAME.geojson. metrics.json gets an `instances`
block: `object_f1` and `ap` over the images with true labels (metrics.py), the counts, the
settings, and per image its `object_f1`, `ap`, `tp`, `fp`, `fn`, `objects`. The dataset-level
numbers come from the per-image counts of every process, so sharding changes nothing.
"""

from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from podium.datasets.readers import MASK_EXTENSIONS, read_mask
from podium.errors import PodiumError
from podium.files import write_image
from podium.tasks.instances.metrics import average_precision, match_counts
from podium.tasks.instances.polygons import instance_polygons, write_geojson
from podium.tasks.instances.watershed import InstanceSettings
from podium.validation import check_bool, check_choice

__all__ = ["InstanceWriter", "write_labels", "FORMATS"]

FORMATS = ("png", "tif")


def write_labels(path: Path, labels: np.ndarray, format: str = "png") -> Path:
    """Ids as a uint16 PNG or a uint32 TIFF (the suffix is set here)."""
    if format == "png":
        if labels.max(initial=0) > np.iinfo(np.uint16).max:
            raise PodiumError(
                f"{path.with_suffix('.png')}: {labels.max()} objects do not fit a 16-bit PNG; "
                "use format: tif (uint32)"
            )
        return write_image(path.with_suffix(".png"), labels.astype(np.uint16))
    return write_image(path.with_suffix(".tif"), labels.astype(np.uint32))


class InstanceWriter:
    """Probabilities → instance labels (watershed.py) → files and per-image numbers."""

    key = "instances"

    def __init__(
        self,
        method: str = "watershed",
        seed_threshold: float = 0.7,
        mask_threshold: float = 0.5,
        min_size: int = 0,
        channel: int = 0,
        format: str = "png",
        polygons: bool = True,
        truth_dir: Optional[str] = "instances",
    ):
        self.settings = InstanceSettings(method, seed_threshold, mask_threshold, min_size, channel)
        self.format = check_choice(format, FORMATS, "writers/InstanceWriter format")
        self.polygons = check_bool(polygons, "writers/InstanceWriter polygons")
        self.truth_dir = truth_dir
        self.out: Optional[Path] = None
        self.truth: Dict[str, Path] = {}

    def open(self, out: Path, root: Path) -> None:
        self.out = Path(out)
        folder = Path(root) / self.truth_dir if self.truth_dir else None
        if folder is not None and folder.is_dir():
            self.truth = {
                p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in MASK_EXTENSIONS
            }

    def add(self, name: str, probabilities: np.ndarray) -> Dict[str, Any]:
        labels = self.settings(probabilities)
        write_labels(self.out / "instances" / name, labels, self.format)
        if self.polygons:
            write_geojson(self.out / "polygons" / f"{name}.geojson", instance_polygons(labels))
        numbers: Dict[str, Any] = {"objects": int(labels.max())}
        if name in self.truth:
            truth = read_mask(self.truth[name])
            if truth.shape != labels.shape:
                raise PodiumError(
                    f"true instances {self.truth[name]} are {truth.shape[1]}×{truth.shape[0]} but "
                    f"the image is {labels.shape[1]}×{labels.shape[0]}; expected the same size"
                )
            tp, fp, fn = match_counts(truth, labels)
            f1 = 2 * tp[0] / max(2 * tp[0] + fp[0] + fn[0], 1) if tp[0] + fp[0] + fn[0] else 1.0
            numbers.update(
                object_f1=float(f1),
                ap=average_precision(tp, fp, fn),
                tp=int(tp[0]),
                fp=int(fp[0]),
                fn=int(fn[0]),
            )
        return numbers

    def summary(self, per_image: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
        scored = [v for v in per_image.values() if "ap" in v]
        result: Dict[str, Any] = {"settings": self.settings.to_config(), "images": len(per_image)}
        if scored:
            tp, fp, fn = (sum(v[k] for v in scored) for k in ("tp", "fp", "fn"))
            result.update(
                object_f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
                ap=float(np.mean([v["ap"] for v in scored])),
                tp=tp,
                fp=fp,
                fn=fn,
                scored_images=len(scored),
            )
        result["per_image"] = per_image
        return result
