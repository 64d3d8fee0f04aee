"""References between config blocks, checked when the runner is built (nothing written yet)
or, for metric names, as soon as the loader that logs them ends its first pass.

Catalyst resolves these only when it uses them: a callback's `loader_key: valdi` is a KeyError
after the first epoch, `criterion_key: bcee` one at the first batch, a SchedulerCallback in a
stage without a scheduler an AssertionError, a model with 3 output channels for binary masks a
shape error from the loss — each a traceback, after the run directory was written.
"""

import inspect
from typing import Any, Iterable, List, Mapping, Optional

from podium.errors import PodiumError, did_you_mean

__all__ = [
    "check_references",
    "check_stage_references",
    "check_model_fits_data",
    "check_model_outputs",
    "check_ignored_pixels",
    "check_metric_keys",
    "explain_missing_batch_metric",
]

# callback argument -> the stage block whose named entries it picks
_NAMED_BLOCKS = {
    "criterion_key": "criterion",
    "optimizer_key": "optimizer",
    "scheduler_key": "scheduler",
}


def _named(block: Any) -> Optional[List[str]]:
    """Names of a block of named entries (`criterion: {bce: {...}, dice: {...}}`), None for one."""
    if not isinstance(block, Mapping) or "_target_" in block:
        return None
    return [str(k) for k in block if not str(k).startswith("_")]


def _factory(params: Mapping) -> Any:
    from catalyst.registry import REGISTRY

    try:
        return REGISTRY.get(params.get("_target_"))
    except Exception:  # unresolvable targets are reported by podium.targets.check_targets
        return None


def _is(factory: Any, base) -> bool:
    return isinstance(factory, type) and issubclass(factory, base)


def _one_of(value: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    return f"{did_you_mean(value, choices)}; expected one of: {', '.join(choices)}"


def check_stage_references(
    stage: str, stage_config: Mapping[str, Any], loaders: Iterable[str]
) -> None:
    """Each callback of the stage names a loader, criterion, optimizer and scheduler it has."""
    from catalyst.callbacks import CriterionCallback, SchedulerCallback
    from catalyst.core.callback import IOptimizerCallback, ISchedulerCallback

    from podium.callbacks.swa import SWACallback

    loaders = list(loaders)
    callbacks = stage_config.get("callbacks") or {}
    for name, params in callbacks.items():
        if not isinstance(params, Mapping):
            continue
        where = f"stages/{stage}/callbacks/{name}"
        loader_keys = params.get("loader_key")
        for loader in [loader_keys] if isinstance(loader_keys, str) else []:
            if loader not in loaders:
                raise PodiumError(
                    f'{where}/loader_key "{loader}" is not a loader of '
                    f"stage {stage}{_one_of(loader, loaders)}"
                )
        for key, block in _NAMED_BLOCKS.items():
            value = params.get(key)
            if value is None:
                continue
            if block not in stage_config:
                raise PodiumError(
                    f'{where}/{key} is "{value}" but stage {stage} has no `{block}:` block; '
                    f"expected stages/{stage}/{block} with an entry {value}"
                )
            names = _named(stage_config[block])
            if names is None:
                raise PodiumError(
                    f'{where}/{key} is "{value}" but stages/{stage}/{block} '
                    f"is one {block}, not named ones; expected no {key}, "
                    f"or `{block}: {{{value}: {{_target_: ...}}}}`"
                )
            if str(value) not in names:
                raise PodiumError(
                    f'{where}/{key} "{value}" is not in '
                    f"stages/{stage}/{block}{_one_of(str(value), names)}"
                )
        factory = _factory(params)
        if _is(factory, SchedulerCallback) and "scheduler" not in stage_config:
            raise PodiumError(
                f"{where} ({factory.__name__}) needs a `scheduler:` block in stage {stage}, "
                "which has none; expected e.g. "
                "scheduler: {_target_: torch.optim.lr_scheduler.CosineAnnealingLR, T_max: 10}"
            )
        if (
            _is(factory, (IOptimizerCallback, ISchedulerCallback))
            and "optimizer" not in stage_config
        ):
            raise PodiumError(
                f"{where} ({factory.__name__}) needs an `optimizer:` block in stage {stage}, "
                "which has none; expected e.g. optimizer: {_target_: torch.optim.AdamW, lr: 0.001}"
            )
        if _is(factory, SWACallback):
            _check_swa(where, stage, stage_config, params)
        if _is(factory, CriterionCallback) and "criterion" not in stage_config:
            raise PodiumError(
                f"{where} ({factory.__name__}) needs a `criterion:` block in stage {stage}, "
                "which has none; expected e.g. criterion: {_target_: torch.nn.BCEWithLogitsLoss}"
            )


def _check_swa(where: str, stage: str, stage_config: Mapping[str, Any], params: Mapping) -> None:
    """SWACallback's start_epoch lies inside the stage; its lr and a scheduler do not fight."""
    epochs, start = stage_config.get("num_epochs"), params.get("start_epoch", 1)
    if isinstance(epochs, int) and isinstance(start, int) and start > epochs:
        raise PodiumError(
            f"{where}/start_epoch {start} is beyond stage {stage}, which has {epochs} "
            f"epoch(s); expected 1..{epochs} (the first epoch whose weights are averaged)"
        )
    if params.get("lr") is not None and stage_config.get("scheduler") is not None:
        raise PodiumError(
            f"{where}/lr sets the LR through SWALR, but stage {stage} has a scheduler too; "
            "expected no scheduler in the SWA stage, or lr: null to keep the stage's schedule"
        )


def _model_params(model_config: Mapping[str, Any], factory) -> dict:
    params = {
        name: p.default
        for name, p in inspect.signature(factory).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    params.update({k: v for k, v in model_config.items() if k != "_target_"})
    return params


def _image_channels(dataset) -> Optional[int]:
    """Channels the dataset gives the model: in_channels / channels, else the first image's."""
    from podium.datasets import read_image

    if dataset.in_channels is not None:
        return dataset.in_channels
    if dataset.channels is not None:
        return len(dataset.channels)
    path = next((p for p in dataset.image_paths if p is not None), None)
    try:
        return int(read_image(path).shape[-1]) if path is not None else None
    except PodiumError:  # an unreadable image is reported by the dataset, with its policy
        return None


def check_model_fits_data(
    model_config: Any, datasets: Optional[Mapping[str, Any]], stage: str
) -> None:
    """podium's segmentation model has the input and output channels the stage's data has."""
    from podium.datasets import ImageFolderDataset
    from podium.models import ARCHITECTURES, build_segmentation_model, get_model

    if not isinstance(model_config, Mapping) or not datasets:
        return
    factory = _factory(model_config)
    if callable(getattr(factory, "resolve_block", None)):  # create_model: the builder `name`s
        factory = factory.resolve_block(model_config)[0]
    if factory not in (build_segmentation_model, *map(get_model, ARCHITECTURES)):
        return  # other tasks' models: their own builders check their heads
    params = _model_params(model_config, factory)
    for loader, dataset in datasets.items():
        if not isinstance(dataset, ImageFolderDataset):
            continue
        where = f"the data of stage {stage} (loader {loader})"
        if dataset.with_masks and params.get("num_classes") != dataset.num_classes:
            raise PodiumError(
                f"model/num_classes is {params.get('num_classes')!r} but {where} "
                f"has {dataset.target} masks with num_classes {dataset.num_classes}; "
                f"expected model/num_classes: {dataset.num_classes} (one output "
                "channel per class; binary: 1)"
            )
        channels = _image_channels(dataset)
        if channels is not None and params.get("in_channels") != channels:
            raise PodiumError(
                f"model/in_channels is {params.get('in_channels')!r} but {where} gives images "
                f"of {channels} channel(s) (e.g. {dataset.image_paths[0]}); "
                f"expected model/in_channels: {channels} (or pick channels with data/channels)"
            )


def check_model_outputs(config: Mapping[str, Any]) -> None:
    """A model with aux heads returns a dict, which joins the batch only with output_key null
    (a string key would nest the dict under it and every callback would miss its keys)."""
    model, runner = config.get("model"), config.get("runner")
    if not isinstance(model, Mapping) or not model.get("aux_heads"):
        return
    output_key = (runner or {}).get("output_key", "logits") if isinstance(runner, Mapping) else None
    if output_key is not None:
        raise PodiumError(
            f"model/aux_heads makes the model return a dict (logits, "
            f"{', '.join(map(str, model['aux_heads']))}), but runner/output_key is "
            f"{output_key!r}; expected runner: {{output_key: null}} so its keys join the batch"
        )


def check_references(
    config: Mapping[str, Any], stage: str, datasets: Optional[Mapping[str, Any]]
) -> None:
    """The checks above and non-empty datasets, for one stage (`datasets`: the runner's, None
    for Catalyst's `loaders/datasets` form)."""
    stage_config = config["stages"][stage]
    loaders = (
        datasets
        if datasets is not None
        else (stage_config.get("loaders") or {}).get("datasets") or {}
    )
    check_stage_references(stage, stage_config, list(loaders))
    for name, dataset in (datasets or {}).items():
        if hasattr(dataset, "__len__") and len(dataset) == 0:
            raise PodiumError(
                f"loader {name} of stage {stage} yields nothing: "
                f"its {type(dataset).__name__} has 0 samples; expected at least one"
            )
    check_model_fits_data(config.get("model"), datasets, stage)
    check_model_outputs(config)
    check_ignored_pixels(config, stage, datasets)


def _ignore_value(datasets: Optional[Mapping[str, Any]]) -> Optional[int]:
    values = {getattr(d, "ignore_index", None) for d in (datasets or {}).values()} - {None}
    return values.pop() if len(values) == 1 else None


def _accepts(factory: Any, name: str) -> Optional[bool]:
    """Whether `factory` takes the argument `name`; None when its signature cannot tell."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    if name in parameters:
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return False


def _default(factory: Any, name: str) -> Any:
    parameter = inspect.signature(factory).parameters[name]
    return None if parameter.default is inspect.Parameter.empty else parameter.default


def check_ignored_pixels(
    config: Mapping[str, Any], stage: str, datasets: Optional[Mapping[str, Any]]
) -> None:
    """Pixels the data marks as ignored (nodata, padding: the dataset's `ignore_index`) count
    in no loss term and no mask metric: each criterion sets `ignore_index`, each metric callback
    reading the mask `ignore_value`, to that value."""
    from catalyst.callbacks import CriterionCallback
    from catalyst.callbacks.metric import IMetricCallback

    from podium.callbacks.metrics import AccumulatorCallback

    value = _ignore_value(datasets)
    if value is None:
        return
    why = f"the data marks nodata and padding pixels with {value}"
    stage_config = config["stages"][stage]
    criteria = stage_config.get("criterion") or {}
    named = _named(criteria)
    entries = {n: criteria[n] for n in named} if named is not None else {"": criteria}
    for name, params in entries.items():
        factory = _factory(params) if isinstance(params, Mapping) else None
        where = f"stages/{stage}/criterion" + (f"/{name}" if name else "")
        accepts = _accepts(factory, "ignore_index") if factory is not None else None
        if accepts is False:
            raise PodiumError(
                f"{where}: {params['_target_']} cannot ignore pixels, but {why}; use a loss "
                f"with ignore_index: {value} (podium.losses.SoftBCEWithLogitsLoss, DiceLoss, "
                f"torch.nn.CrossEntropyLoss, ...)"
            )
        given = params.get("ignore_index", _default(factory, "ignore_index")) if accepts else value
        if given != value:
            raise PodiumError(f"{where}/ignore_index is {given!r}, but {why}; set it to {value}")
    target_key = (config.get("runner") or {}).get("target_key", "mask")
    for name, params in (stage_config.get("callbacks") or {}).items():
        factory = _factory(params) if isinstance(params, Mapping) else None
        metric = _is(factory, IMetricCallback) or _is(factory, AccumulatorCallback)
        if not metric or _is(factory, CriterionCallback):  # criteria: checked above
            continue
        if params.get("target_key", _default_or(factory, "target_key")) != target_key:
            continue
        where = f"stages/{stage}/callbacks/{name}"
        if not _accepts(factory, "ignore_value"):
            raise PodiumError(
                f"{where}: {params['_target_']} counts every pixel of {target_key}, but {why}; "
                f"use podium.callbacks.SegmentationMetricsCallback with ignore_value: {value}"
            )
        given = params.get("ignore_value", _default(factory, "ignore_value"))
        if given != value:
            raise PodiumError(f"{where}/ignore_value is {given!r}, but {why}; set it to {value}")


def _default_or(factory: Any, name: str) -> Any:
    return _default(factory, name) if _accepts(factory, name) else None


def check_metric_keys(runner) -> None:
    """At a loader's end: checkpoint / early-stopping / plateau callbacks reading this loader
    name a metric it logged (Catalyst would raise a bare KeyError at the epoch's end)."""
    from catalyst.callbacks import CheckpointCallback, EarlyStoppingCallback, SchedulerCallback

    logged = runner.loader_metrics
    for name, callback in runner.callbacks.items():
        if not isinstance(callback, (CheckpointCallback, EarlyStoppingCallback, SchedulerCallback)):
            continue
        metric = getattr(callback, "metric_key", None)
        if getattr(callback, "loader_key", None) != runner.loader_key or not isinstance(
            metric, str
        ):
            continue
        if metric not in logged:
            raise PodiumError(
                f'stages/{runner.stage_key}/callbacks/{name}/metric_key "{metric}" is not a metric '
                f"of loader {runner.loader_key}{_one_of(metric, sorted(logged))}"
            )


def _metric_readers(runner):
    """(name, field, wanted keys, metrics they are read from) of the optimizer and
    metric-aggregation callbacks: what they read from batch / loader metrics."""
    from catalyst.callbacks import MetricAggregationCallback
    from catalyst.core.callback import IOptimizerCallback

    for name, callback in runner.callbacks.items():
        callback = getattr(callback, "callback", callback)  # Catalyst's loader-filter wrappers
        if isinstance(callback, IOptimizerCallback) and isinstance(
            getattr(callback, "metric_key", None), str
        ):
            yield name, "metric_key", [callback.metric_key], runner.batch_metrics
        elif isinstance(callback, MetricAggregationCallback) and callback.metrics is not None:
            scope = runner.batch_metrics if callback.scope == "batch" else runner.loader_metrics
            yield name, "metrics", [str(key) for key in callback.metrics], scope


def explain_missing_batch_metric(runner, error: BaseException) -> None:
    """After a KeyError in a loader: an optimizer or MetricAggregationCallback that reads a
    metric no callback logged is named, with the metrics there are (Catalyst: a bare KeyError
    from inside its callback, at the first batch)."""
    if not isinstance(error, KeyError) or not error.args:
        return
    raised = error.args[0]  # the key (OptimizerCallback), Catalyst's sentence (aggregation)
    for name, field, wanted, logged in _metric_readers(runner):
        missing = [key for key in wanted if key not in logged]
        # Catalyst's aggregation error lists the keys it looked in: it tells batch from loader scope
        ours = raised in missing or raised == f"Could not found required key out of {logged.keys()}"
        if missing and ours:
            raise PodiumError(
                f'stages/{runner.stage_key}/callbacks/{name}/{field} names "{missing[0]}", '
                "which no callback logged for "
                f"loader {runner.loader_key}{_one_of(missing[0], sorted(logged))} (the loss keys "
                "of the criterion callbacks, or a metric callback's keys)"
            ) from error
