"""Catalyst callbacks over `podium.metrics` accumulators: reset on loader start, update on
every batch, reduce across DDP ranks and log at loader end.

    callbacks:
      seg_metrics:
        _target_: podium.callbacks.metrics.SegmentationMetricsCallback
        input_key: logits            # raw logits: the callback applies the activation
        target_key: mask
        activation: sigmoid          # sigmoid | softmax | argmax | none
        threshold: 0.5
        metrics: [dice, iou]

Logged into `runner.loader_metrics` (so CSV / TensorBoard / checkpoint / early stopping see
them) under `{prefix}{name}`: e.g. `dice` (= macro), `dice/_macro`, `dice/_micro`,
`dice/<class name>`, `iou…`, `r2`, `r2/_pooled`, `r2/<group>`, `accuracy`, `f1…`, `box_iou`.

Under DDP every rank runs the callbacks (node: all) and at loader end the accumulator state is
summed over ranks (`Accumulator.reduced()`, one `all_reduce`), so every rank logs the value one
process would compute on the whole loader. (A DistributedSampler that pads the last batch by
repeating samples counts those samples twice — as it does for every Catalyst metric.)
"""

import copy
from typing import Dict, Optional, Sequence, Union

from catalyst.core.callback import Callback, CallbackNode, CallbackOrder

from podium.metrics import BoxIoU, ClassificationScores, R2Score, SegmentationScores
from podium.metrics.base import Accumulator

__all__ = [
    "AccumulatorCallback",
    "SegmentationMetricsCallback",
    "R2Callback",
    "ClassificationMetricsCallback",
    "BoxIoUCallback",
]


class AccumulatorCallback(Callback):
    """Drives any `podium.metrics.Accumulator` from batch keys.

    Args:
        metric: the accumulator (reset at every loader start).
        input_key: batch key of the predictions (first positional argument of `update`).
        target_key: batch key of the targets (second positional argument).
        extra_keys: `{update keyword: batch key}` for further inputs (e.g. R2's `group`).
        prefix: prepended to every logged key.
        log_on_batch: also log the batch's own values in `runner.batch_metrics` (this rank's
            batch only, not reduced across ranks).
        compute_kwargs: keyword arguments of the accumulator's `compute_key_value`.
    """

    def __init__(
        self,
        metric: Accumulator,
        input_key: str,
        target_key: str,
        extra_keys: Optional[Dict[str, str]] = None,
        prefix: str = "",
        log_on_batch: bool = False,
        compute_kwargs: Optional[Dict] = None,
    ):
        super().__init__(order=CallbackOrder.metric, node=CallbackNode.all)
        if not isinstance(metric, Accumulator):
            raise TypeError(
                f"metric must be a podium.metrics.Accumulator, got {type(metric).__name__}"
            )
        self.metric = metric
        self.input_key = input_key
        self.target_key = target_key
        self.extra_keys = dict(extra_keys or {})
        self.prefix = prefix or ""
        self.log_on_batch = log_on_batch
        self.compute_kwargs = dict(compute_kwargs or {})
        self._template = copy.deepcopy(metric)
        self._template.reset()

    def _update(self, metric: Accumulator, runner) -> None:
        batch = runner.batch
        extra = {name: batch[key] for name, key in self.extra_keys.items()}
        metric.update(batch[self.input_key], batch[self.target_key], **extra)

    def on_loader_start(self, runner) -> None:
        self.metric.reset()

    def on_batch_end(self, runner) -> None:
        self._update(self.metric, runner)
        if self.log_on_batch:
            batch_metric = copy.deepcopy(self._template)
            self._update(batch_metric, runner)
            runner.batch_metrics.update(
                batch_metric.compute_key_value(self.prefix, **self.compute_kwargs)
            )

    def on_loader_end(self, runner) -> None:
        values = self.metric.reduced().compute_key_value(self.prefix, **self.compute_kwargs)
        runner.loader_metrics.update(values)


class SegmentationMetricsCallback(AccumulatorCallback):
    """Dice / IoU per class, macro and micro, from logits (see `podium.metrics.segmentation`).

    Logs `{prefix}dice` (= macro; for one class, that class's Dice), `{prefix}dice/_macro`,
    `{prefix}dice/_micro` and, with several classes or `class_names`, `{prefix}dice/<name>`
    (default names class_00, class_01, ...; with `classes`, only those) — the same for `iou`.
    """

    def __init__(
        self,
        input_key: str = "logits",
        target_key: str = "mask",
        activation: Optional[str] = "sigmoid",
        threshold: Union[float, Sequence[float]] = 0.5,
        metrics: Sequence[str] = ("dice", "iou"),
        per_image: bool = False,
        ignore_value: Optional[float] = None,
        class_names: Optional[Sequence[str]] = None,
        classes: Optional[Sequence[int]] = None,
        empty_score: Optional[float] = 1.0,
        num_classes: Optional[int] = None,
        prefix: str = "",
        log_on_batch: bool = False,
    ):
        metric = SegmentationScores(
            num_classes=num_classes,
            activation=activation,
            threshold=threshold,
            per_image=per_image,
            ignore_value=ignore_value,
            empty_score=empty_score,
            metrics=metrics,
            classes=classes,
            class_names=class_names,
        )
        super().__init__(metric, input_key, target_key, prefix=prefix, log_on_batch=log_on_batch)


class R2Callback(AccumulatorCallback):
    """R2 from sums (see `podium.metrics.regression`); with `group_key`, R2 per group averaged.

    Logs `{prefix}r2` (the group mean, or the plain R2 without groups) and, with groups,
    `{prefix}r2/_pooled` (all data as one group) and `{prefix}r2/<group>` (`log_groups`).
    """

    def __init__(
        self,
        input_key: str,
        target_key: str,
        group_key: Optional[str] = None,
        multioutput: str = "flatten",
        ignore_value: Optional[float] = None,
        log_groups: bool = True,
        prefix: str = "",
        log_on_batch: bool = False,
    ):
        super().__init__(
            R2Score(multioutput=multioutput, ignore_value=ignore_value),
            input_key,
            target_key,
            extra_keys={"group": group_key} if group_key else None,
            prefix=prefix,
            log_on_batch=log_on_batch,
            compute_kwargs={"log_groups": log_groups},
        )


class ClassificationMetricsCallback(AccumulatorCallback):
    """Accuracy and F1 (see `podium.metrics.classification`).

    `num_classes=1`: binary head (sigmoid + threshold), logs `{prefix}accuracy`, `{prefix}f1`.
    `num_classes=C`: multi-class (argmax), also `{prefix}f1/_macro` (= `f1`), `{prefix}f1/_micro`,
    `{prefix}f1/<class name>`.
    """

    def __init__(
        self,
        input_key: str,
        target_key: str,
        num_classes: int = 1,
        activation: Optional[str] = None,
        threshold: float = 0.5,
        ignore_value: Optional[float] = None,
        class_names: Optional[Sequence[str]] = None,
        prefix: str = "",
        log_on_batch: bool = False,
    ):
        if activation is None:
            activation = "sigmoid" if int(num_classes) == 1 else "softmax"
        metric = ClassificationScores(
            num_classes=num_classes,
            activation=activation,
            threshold=threshold,
            ignore_value=ignore_value,
            class_names=class_names,
        )
        super().__init__(metric, input_key, target_key, prefix=prefix, log_on_batch=log_on_batch)


class BoxIoUCallback(AccumulatorCallback):
    """Mean IoU of matched box pairs (see `podium.metrics.boxes`); logs `{prefix}box_iou`."""

    def __init__(
        self,
        input_key: str,
        target_key: str,
        box_format: str = "xyxy",
        ignore_value: Optional[float] = None,
        prefix: str = "",
        log_on_batch: bool = False,
    ):
        super().__init__(
            BoxIoU(box_format=box_format, ignore_value=ignore_value),
            input_key,
            target_key,
            prefix=prefix,
            log_on_batch=log_on_batch,
        )
