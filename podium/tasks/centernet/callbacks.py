"""DetectionMAPCallback: per-epoch mAP@0.5 of a CenterNet model, from its heads in the batch.

    callbacks:
      map:
        _target_: podium.tasks.centernet.DetectionMAPCallback
        num_classes: 1
        iou_threshold: 0.5          # logged as map50 (0.75 → map75)
        output_stride: 4            # the model's
        loader_keys: [valid]        # null: every loader

Per batch the model's `heatmap` / `size` / `offset` outputs are decoded into boxes
(`decode_centernet` of model.py: 3×3 max-pool peaks, top-k) — exactly as
`podium predict` of a CenterNet run decodes them without TTA — and matched against the padded
ground truth (`boxes` N×M×4, `labels` N×M with −1 padding) by `DetectionMAP` (metrics.py).
At loader end `{prefix}map50` (and `map50/<class>` for several classes) goes into the loader
metrics, so CSV / TensorBoard / CheckpointCallback / early stopping see it.

Under DDP every rank decodes and matches its own images; at loader end the detection rows are
gathered and the ground-truth counts summed over ranks, so every rank logs the mAP of the whole
loader (a DistributedSampler that pads the last batch counts the repeated images twice, as it
does for every Catalyst metric).
"""

from typing import Optional, Sequence

from catalyst.core.callback import Callback, CallbackNode, CallbackOrder

from podium.errors import PodiumError
from podium.tasks.centernet.metrics import DetectionMAP
from podium.tasks.centernet.model import decode_centernet
from podium.validation import check_int

__all__ = ["DetectionMAPCallback"]


class DetectionMAPCallback(Callback):
    """mAP at `iou_threshold` of decoded CenterNet outputs (see the module docstring).

    Args:
        heatmap_key, size_key, offset_key: batch keys of the model's heads.
        boxes_key, labels_key: batch keys of the padded ground truth (xyxy input pixels).
        num_classes, class_names: heatmap channels and their names (for `map50/<name>`).
        output_stride: input pixels per output cell (the model's).
        top_k, pool_size, min_score: decoding (100 peaks per image, 3×3 max-pool, all scores).
        loader_keys: loaders to evaluate (None: all).
        prefix: prepended to the logged keys.
    """

    def __init__(
        self,
        num_classes: int = 1,
        iou_threshold: float = 0.5,
        output_stride: int = 4,
        top_k: int = 100,
        pool_size: int = 3,
        min_score: float = 0.0,
        heatmap_key: str = "heatmap",
        size_key: str = "size",
        offset_key: str = "offset",
        boxes_key: str = "boxes",
        labels_key: str = "labels",
        class_names: Optional[Sequence[str]] = None,
        loader_keys: Optional[Sequence[str]] = None,
        prefix: str = "",
    ):
        super().__init__(order=CallbackOrder.metric, node=CallbackNode.all)
        self.metric = DetectionMAP(num_classes, iou_threshold, class_names)
        for name, value in (
            ("output_stride", output_stride),
            ("top_k", top_k),
            ("pool_size", pool_size),
        ):
            check_int(value, f"DetectionMAPCallback {name}", 1)
        if pool_size % 2 == 0:
            raise PodiumError(
                f"DetectionMAPCallback pool_size must be odd (a centred window), got {pool_size}"
            )
        self.output_stride, self.top_k = output_stride, top_k
        self.pool_size, self.min_score = pool_size, float(min_score)
        self.keys = {
            "heatmap": heatmap_key,
            "size": size_key,
            "offset": offset_key,
            "boxes": boxes_key,
            "labels": labels_key,
        }
        self.loader_keys = None if loader_keys is None else [str(k) for k in loader_keys]
        self.prefix = prefix or ""
        self._active = False

    def on_loader_start(self, runner) -> None:
        self._active = self.loader_keys is None or runner.loader_key in self.loader_keys
        self.metric.reset()

    def on_batch_end(self, runner) -> None:
        if not self._active:
            return
        batch = runner.batch
        missing = [key for key in self.keys.values() if key not in batch]
        if missing:
            raise PodiumError(
                f"DetectionMAPCallback: the batch has no {', '.join(missing)}; "
                f"it has: {', '.join(batch)}"
            )
        detections = decode_centernet(
            batch[self.keys["heatmap"]],
            batch[self.keys["size"]],
            batch[self.keys["offset"]],
            self.output_stride,
            self.top_k,
            self.pool_size,
            self.min_score,
        )
        self.metric.update(detections, batch[self.keys["boxes"]], batch[self.keys["labels"]])

    def on_loader_end(self, runner) -> None:
        if self._active:
            runner.loader_metrics.update(self.metric.reduced().compute_key_value(self.prefix))
