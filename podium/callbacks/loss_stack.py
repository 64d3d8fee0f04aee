"""LossStackCallback: a weighted sum of loss terms in one YAML block.

Catalyst's own form (a criterion dict, one CriterionCallback per term and a
MetricAggregationCallback with mode weighted_sum) keeps working; this is the compact form:

    loss:
      _target_: podium.callbacks.loss_stack.LossStackCallback
      metric_key: loss
      terms:
        bce:  {weight: 1.0, input_key: logits, target_key: mask,
               criterion: {_target_: podium.losses.SoftBCEWithLogitsLoss}}
        dice: {weight: 0.5, input_key: logits, target_key: mask,
               criterion: {_target_: podium.losses.DiceLoss, mode: binary}}

Per batch it puts `loss_<name>` (detached, for logging) and the weighted total `loss` (with
its graph: what `OptimizerCallback(metric_key=loss)` backpropagates) into
`runner.batch_metrics`; per loader, the sample-weighted means of every term and of the total
(plus `/mean`, `/std`, as Catalyst's CriterionCallback logs) into `runner.loader_metrics`.
Under DDP the means are combined over all ranks by sample count (Catalyst's own loss
callbacks average the per-rank means instead).

`input_key` / `target_key` are batch keys; like Catalyst's metric callbacks they may also be
dicts {batch_key: argument_name} for criteria with several named inputs (HuberCosLoss).
`criterion` is a `_target_` block (checked, with "did you mean") or a built module (what
hydra-slayer passes under `catalyst-dl run`: it builds nested `_target_` blocks itself, and
podium's losses check their own arguments then).

Self-training (labeled + soft-labeled samples in one batch, `data: {soft_labels: ...}`): with
`sample_key: soft` (a per-sample bool of the batch), a term with `samples: hard` sees only the
samples whose flag is false, `samples: soft` only those whose flag is true (default `all`):

    loss:
      _target_: podium.callbacks.LossStackCallback
      sample_key: soft
      terms:
        bce:  {samples: hard, input_key: logits, target_key: mask, criterion: {...BCE}}
        dice: {samples: hard, input_key: logits, target_key: mask, criterion: {...DiceLoss}}
        kd:   {samples: soft, weight: 0.5, input_key: logits, target_key: soft_mask,
               criterion: {_target_: podium.losses.SoftTargetBCEWithLogitsLoss}}

Each term is the criterion's value on its samples (a term whose samples are absent from a batch
is left out of that batch's total and of its loader mean, which counts the samples it saw).
`loss_hard` and `loss_soft` log the weighted sums of the hard and of the soft terms: per batch,
loss = loss_hard + loss_soft (+ any term of all samples).
"""

from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import torch
from catalyst.core.callback import CallbackNode, CallbackOrder, ICriterionCallback
from catalyst.metrics import AdditiveMetric
from torch import nn

from podium.errors import PodiumError, check_keys, did_you_mean
from podium.targets import call_target

__all__ = ["LossStackCallback", "LossTerm"]

TERM_KEYS = ("weight", "input_key", "target_key", "criterion", "samples")
SAMPLES = ("all", "hard", "soft")
Keys = Union[str, Mapping[str, str]]


class LossTerm:
    """One weighted criterion applied to batch[input_key], batch[target_key]."""

    def __init__(
        self,
        name: str,
        criterion: Callable,
        input_key: Keys,
        target_key: Keys,
        weight: float = 1.0,
        samples: str = "all",
    ):
        self.name, self.criterion, self.weight = name, criterion, float(weight)
        self.input_key, self.target_key = input_key, target_key
        if samples not in SAMPLES:
            raise PodiumError(
                f"loss term {name}: samples {samples!r} is not one of {', '.join(SAMPLES)}"
                f"{did_you_mean(samples, SAMPLES)}"
            )
        self.samples = samples
        self.kwargs_form = isinstance(input_key, Mapping)
        if self.kwargs_form != isinstance(target_key, Mapping):
            raise PodiumError(
                f"loss term {name}: input_key and target_key must both be batch keys or both "
                f"be mappings {{batch_key: argument}}"
            )

    def __call__(
        self, batch: Mapping[str, Any], rows: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """The criterion on the batch, or on the samples where `rows` (bool, one per sample) is
        true."""

        def take(key):
            value = batch[key]
            return value[rows] if rows is not None and isinstance(value, torch.Tensor) else value

        try:
            if self.kwargs_form:
                kwargs = {
                    arg: take(key)
                    for key, arg in {**dict(self.input_key), **dict(self.target_key)}.items()
                }
                return self.criterion(**kwargs)
            return self.criterion(take(self.input_key), take(self.target_key))
        except KeyError as error:
            if error.args and error.args[0] in batch:
                raise
            raise PodiumError(
                f"loss term {self.name}: batch has no key {error}; it has: {', '.join(batch)}"
            ) from None


def _build_term(name: str, params: Any) -> LossTerm:
    where = f"loss term {name}"
    if not isinstance(params, Mapping):
        raise PodiumError(f"{where} must be a mapping with {', '.join(TERM_KEYS)}")
    check_keys(params, TERM_KEYS, where)
    for key in ("input_key", "target_key", "criterion"):
        if key not in params:
            raise PodiumError(f"{where} needs `{key}`")
    criterion = params["criterion"]
    if isinstance(criterion, Mapping):
        criterion = call_target(criterion, f"{where}/criterion")
    if not callable(criterion):
        raise PodiumError(
            f"{where}/criterion must be a `_target_` block or a callable, "
            f"got {type(criterion).__name__}"
        )
    try:
        weight = float(params.get("weight", 1.0))
    except (TypeError, ValueError):
        raise PodiumError(
            f"{where}/weight must be a number, got {params.get('weight')!r}"
        ) from None
    return LossTerm(
        name,
        criterion,
        params["input_key"],
        params["target_key"],
        weight,
        params.get("samples", "all"),
    )


def _group_keys(
    terms: Mapping[str, LossTerm], metric_key: str, sample_key: Optional[str]
) -> Dict[str, str]:
    """{hard: loss_hard, soft: loss_soft} with a sample_key; checks that terms agree with it."""
    selective = [name for name, term in terms.items() if term.samples != "all"]
    if sample_key is None:
        if selective:
            raise PodiumError(
                f"loss term {selective[0]} has samples: {terms[selective[0]].samples}, which needs "
                f"LossStackCallback's sample_key (the batch key of the soft flag, e.g. soft)"
            )
        return {}
    if not isinstance(sample_key, str) or not sample_key:
        raise PodiumError(f"LossStackCallback sample_key must be a batch key, got {sample_key!r}")
    keys = {group: f"{metric_key}_{group}" for group in ("hard", "soft")}
    for name in terms:
        if name in keys:
            raise PodiumError(
                f"loss term {name}: the name is taken by the "
                f"logged sum {keys[name]}; rename the term"
            )
    return keys


class LossStackCallback(ICriterionCallback):
    """Weighted sum of loss terms: `metric_key` = Σ weight · term, each term logged as
    `<metric_key>_<name>`.

    Args:
        terms: {name: {weight, input_key, target_key, criterion, samples}}; weight defaults
            to 1, samples (all | hard | soft) to all.
        metric_key: key of the total in batch/loader metrics (what OptimizerCallback uses).
        sample_key: batch key of the per-sample soft flag (needed by `samples: hard|soft`);
            also logs `<metric_key>_hard` and `<metric_key>_soft`.
    """

    def __init__(
        self,
        terms: Mapping[str, Mapping[str, Any]],
        metric_key: str = "loss",
        sample_key: Optional[str] = None,
    ):
        super().__init__(order=CallbackOrder.metric, node=CallbackNode.all)
        if not isinstance(terms, Mapping) or not terms:
            raise PodiumError("LossStackCallback needs `terms: {name: {criterion: ..., ...}}`")
        if not isinstance(metric_key, str) or not metric_key:
            raise PodiumError(f"LossStackCallback metric_key must be a name, got {metric_key!r}")
        self.metric_key = metric_key
        self.terms: Dict[str, LossTerm] = {
            str(name): _build_term(str(name), params) for name, params in terms.items()
        }
        self.keys = {name: f"{metric_key}_{name}" for name in self.terms}
        self.sample_key = sample_key
        self.group_keys = _group_keys(self.terms, metric_key, sample_key)
        self.meters: Dict[str, AdditiveMetric] = {}

    @property
    def criteria(self) -> Dict[str, Callable]:
        return {name: term.criterion for name, term in self.terms.items()}

    def on_stage_start(self, runner) -> None:
        """Criteria with buffers/parameters go to the engine's device."""
        for term in self.terms.values():
            if isinstance(term.criterion, nn.Module):
                term.criterion = runner.engine.sync_device(term.criterion)

    def on_loader_start(self, runner) -> None:
        keys = [*self.keys.values(), *self.group_keys.values(), self.metric_key]
        self.meters = {key: AdditiveMetric() for key in keys}

    def _rows(self, batch: Mapping[str, Any], batch_size: int) -> Dict[str, Optional[torch.Tensor]]:
        """{samples: bool rows} (None: every sample) from the batch's soft flag."""
        if self.sample_key is None:
            return {"all": None}
        if self.sample_key not in batch:
            raise PodiumError(
                f"LossStackCallback: batch has no key {self.sample_key!r} "
                "(sample_key) for the terms with samples: hard|soft; "
                f"it has: {', '.join(batch)} (soft flags come with data/soft_labels)"
            )
        flag = torch.as_tensor(batch[self.sample_key])
        if flag.dim() != 1 or flag.shape[0] != batch_size:
            raise PodiumError(
                f"LossStackCallback: batch[{self.sample_key!r}] has shape {tuple(flag.shape)}; "
                f"expected one flag per sample ({batch_size})"
            )
        soft = flag.bool()
        return {"all": None, "hard": ~soft, "soft": soft}

    def on_batch_end(self, runner) -> None:
        batch_size = runner.batch_size
        rows = self._rows(runner.batch, batch_size)
        values, counts = {}, {}
        for name, term in self.terms.items():
            selected = rows[term.samples]
            count = batch_size if selected is None else int(selected.sum())
            if count == 0:
                continue  # none of its samples in this batch
            value = term(runner.batch, selected)
            if not isinstance(value, torch.Tensor):
                raise PodiumError(
                    f"loss term {name}: the criterion returned {type(value).__name__}, not a tensor"
                )
            values[name], counts[name] = value, count
        if not values:
            kind = "soft" if bool(rows["soft"].all()) else "hard"
            raise PodiumError(
                f"no loss term applies to the samples of this batch (all {kind}); expected a term "
                f"with samples: all or {kind}"
            )
        # the same arithmetic as MetricAggregationCallback(mode="weighted_sum")
        weighted = {
            name: (value * self.terms[name].weight).float() for name, value in values.items()
        }
        total = torch.sum(torch.stack(list(weighted.values())))
        for name, value in values.items():
            detached = value.detach()
            runner.batch_metrics[self.keys[name]] = detached
            self.meters[self.keys[name]].update(float(detached), counts[name])
        for group, key in self.group_keys.items():
            members = [name for name in weighted if self.terms[name].samples == group]
            if members:
                value = torch.sum(torch.stack([weighted[name] for name in members])).detach()
                runner.batch_metrics[key] = value
                self.meters[key].update(float(value), counts[members[0]])
        runner.batch_metrics[self.metric_key] = total
        self.meters[self.metric_key].update(float(total.detach()), batch_size)

    def _loader_values(self, runner) -> Dict[str, Tuple[float, float]]:
        """{key: (mean, std)}, sample-weighted; combined over ranks under DDP."""
        stats = {key: meter for key, meter in self.meters.items() if meter.num_samples > 0}
        if getattr(runner.engine, "world_size", 1) <= 1:
            return {key: meter.compute() for key, meter in stats.items()}
        keys = list(self.meters)
        # per key: n, n·mean, M2 + n·mean² (sums over ranks give the pooled mean and std)
        rows = []
        for key in keys:
            meter = self.meters[key]
            n = float(meter.num_samples)
            mean = float(meter.mean) if n else 0.0
            m2 = float(meter.m_s) if n else 0.0
            rows.append([n, n * mean, m2 + n * mean * mean])
        local = torch.tensor(rows, dtype=torch.float64, device=runner.engine.device)
        total = runner.engine.sync_tensor(local, "sum").cpu().tolist()
        values = {}
        for key, (n, sum_x, sum_sq) in zip(keys, total):
            if n <= 0:
                continue
            mean = sum_x / n
            variance = max(sum_sq - n * mean * mean, 0.0) / max(n - 1.0, 1.0)
            values[key] = (mean, variance**0.5)
        return values

    def on_loader_end(self, runner) -> None:
        for key, (mean, std) in self._loader_values(runner).items():
            runner.loader_metrics.update({key: mean, f"{key}/mean": mean, f"{key}/std": std})
