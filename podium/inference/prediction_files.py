"""The files a prediction run writes per image (masks, probability maps, overlays, submission
rows, the `writers:`' files) and their merge across ranks.

Separate from the run (pipeline.py), which decides what to predict; this decides where and how
it lands on disk. The formats themselves live in writers.py, probability_maps.py, submission.py
and podium/overlays.py.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from podium.inference.probability_maps import write_presence, write_probability_map
from podium.inference.sharding import Shards
from podium.inference.submission import SubmissionWriter
from podium.inference.writers import write_mask
from podium.overlays import write_overlay

__all__ = ["Outputs", "merge_written"]


class Outputs:
    """Everything written per image, plus the merged files."""

    def __init__(
        self, config: Dict[str, Any], mode: str, class_names: Sequence[str], shards: Shards
    ):
        self.out = Path(config["out"])
        self.options = config["outputs"]
        self.mode, self.class_names, self.shards = mode, list(class_names), shards
        self.writers: List[Any] = []  # extra writers (writers.py), set by predict
        self.written: Dict[str, Dict[str, Any]] = {}  # writer key → {image name: its numbers}
        self.submission = None
        submission = self.options["submission"]
        if submission is not None:
            options = {k: v for k, v in submission.items() if k != "path"}
            if "columns" in options and isinstance(options["columns"], list):
                options["columns"] = tuple(options["columns"])
            if (
                len(self.class_names) > 1
                and "columns" not in options
                and "name_format" not in options
            ):
                options["columns"] = (
                    "ImageId",
                    "ClassId",
                    "EncodedPixels",
                )  # one row per image and class
            self.submission_path = Path(submission["path"])
            part = self.submission_path if shards.world_size == 1 else self.part_path(shards.rank)
            self.submission = SubmissionWriter(
                part, mode=mode, class_names=self._submission_classes(), **options
            )
            # the writer checks columns against the mode at the first add(): check now, before any
            # file is written
            probe = np.zeros(
                (len(self.class_names), 1, 1) if mode == "multilabel" else (1, 1), dtype=np.uint8
            )
            SubmissionWriter(
                part, mode=mode, class_names=self._submission_classes(), **options
            ).add("probe", probe)

    def part_path(self, rank: int) -> Path:
        return (
            self.out
            / "_parts"
            / f"{self.submission_path.stem}.rank{rank}{self.submission_path.suffix}"
        )

    def _submission_classes(self) -> Optional[List[str]]:
        if self.mode == "binary":
            return None
        return self.class_names

    def write(
        self,
        name: str,
        image: np.ndarray,
        probabilities: np.ndarray,
        mask: np.ndarray,
        target,
        presence: Optional[np.ndarray] = None,
    ) -> None:
        if self.options["masks"]:
            if self.mode == "multilabel":
                for c, class_name in enumerate(self.class_names):
                    write_mask(
                        self.out / "masks" / class_name / f"{name}.png",
                        (mask[c] > 0).astype(np.uint8) * 255,
                    )
            else:
                write_mask(
                    self.out / "masks" / f"{name}.png",
                    mask * 255 if self.mode == "binary" else mask,
                )
        if self.options["probabilities"]:
            names = None if self.mode == "binary" else self.class_names
            write_probability_map(self.out / "probabilities", name, probabilities, names)
            if presence is not None:
                write_presence(self.out / "probabilities", name, presence)
        if self.options["overlays"]:
            write_overlay(
                self.out / "overlays" / f"{name}.png",
                image,
                _flat(mask, self.mode),
                _flat(target, self.mode, truth=True),
            )
        if self.submission is not None:
            self.submission.add(name, mask)
        for writer in self.writers:
            numbers = writer.add(str(name), probabilities)
            if numbers is not None:
                self.written.setdefault(writer.key, {})[str(name)] = numbers

    def close(self) -> Optional[Path]:
        """Write this rank's submission part; rank 0 merges the parts."""
        if self.submission is None:
            return None
        self.submission.close()
        return self.submission_path

    def merge(self) -> None:
        if self.submission is not None and self.shards.world_size > 1 and self.shards.is_main:
            parts = [self.part_path(rank) for rank in range(self.shards.world_size)]
            SubmissionWriter.merge(parts, self.submission_path)
            for part in parts:
                part.unlink()
            try:
                parts[0].parent.rmdir()
            except OSError:
                pass


def merge_written(written: Dict[str, Dict[str, Any]], shards: Shards) -> Dict[str, Dict]:
    """Every rank's per-image writer numbers, merged and sorted by image name."""
    merged: Dict[str, Dict[str, Any]] = {}
    for part in shards.gather(written):
        for key, per_image in part.items():
            merged.setdefault(key, {}).update(per_image)
    return {key: dict(sorted(v.items())) for key, v in merged.items()}


def _flat(mask, mode: str, truth: bool = False) -> Optional[np.ndarray]:
    """H×W mask for an overlay outline (any class on)."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mode == "multilabel" or (mode == "binary" and mask.ndim == 3):
        return (
            (mask > 0.5).any(axis=0).astype(np.uint8)
            if truth
            else (mask > 0).any(axis=0).astype(np.uint8)
        )
    return mask
