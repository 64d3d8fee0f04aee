"""Freeze encoder blocks at stage start; unfreeze them at a given epoch of the stage.

    callbacks:
      freeze:                                   # all encoder blocks but the last two stay fixed
        _target_: podium.callbacks.freeze.FreezeCallback
        all_but_last: 2
      unfreeze:                                 # ... and train from epoch 4 of the stage on
        _target_: podium.callbacks.freeze.UnfreezeCallback
        epoch: 4

"Blocks" of an encoder (`encoder_blocks`):
- a timm model with `feature_info` (podium's models: `model.encoder` is toolbelt's
  `GenericTimmEncoder`, whose `.encoder` is the timm `features_only` model) → one block per
  feature stage, i.e. the modules from the previous feature output up to and including this
  one (resnet18: stem, layer1, layer2, layer3, layer4; efficientnet_b0: 5 stages; convnext: 4).
  Modules after the last feature output (a timm classifier's pooling + `fc`) are one more block.
- anything else → its top-level children that hold parameters.

Which module: `module:` (a dotted attribute path in the model, e.g. `encoder`), default
`model.encoder` if the model has one, else the whole model (a plain timm classifier).

How it works with Catalyst: `catalyst-dl run` (ConfigRunner) gives *every* parameter of the
model to the optimizer, frozen or not (`process_model_params` takes `model.named_parameters()`
and ignores `requires_grad`). A frozen parameter gets no gradient (`model.zero_grad()` sets
grads to None), and torch optimizers skip parameters whose `.grad` is None (no update, no
weight decay, no momentum), so unfreezing is just `requires_grad_(True)`. When the optimizer
does not hold the parameters (a Python-API run that built it from `requires_grad` parameters
only), `UnfreezeCallback` adds them as a new param group (`lr`, default the first group's) and
appends that lr to the scheduler's `base_lrs` when the scheduler has them.

The stage key `freeze_encoder: true|false` (PodiumRunner) is the simple form and the same
mechanism: `stage_freezing` applies `FreezeCallback(module="encoder")` as the stage's model is
set up (before the engine wraps it, so DDP syncs exactly what trains); a stage without the
key trains the whole encoder again, whatever the previous stage froze. FreezeCallbacks of the
stage then freeze their blocks on top (blocks they do not select stay as the stage set them).
"""

from typing import Iterable, List, Optional, Sequence, Tuple

from catalyst.core.callback import Callback, CallbackNode, CallbackOrder
from torch import nn

from podium.checkpoints import unwrap as _unwrap
from podium.errors import PodiumError

__all__ = [
    "FreezeCallback",
    "UnfreezeCallback",
    "encoder_blocks",
    "resolve_module",
    "select_blocks",
    "set_trainable",
    "stage_freezing",
]

_BATCHNORM = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


def resolve_module(model, module: Optional[str] = None) -> nn.Module:
    """`module` (dotted path) inside the model; default `model.encoder`, else the model."""
    if isinstance(model, dict):
        raise PodiumError("freeze/unfreeze callbacks need one model, not a dict of models")
    model = _unwrap(model)
    if module is None:
        encoder = getattr(model, "encoder", None)
        return encoder if isinstance(encoder, nn.Module) else model
    target = model
    for part in str(module).split("."):
        if not part:
            continue
        child = getattr(target, part, None)
        if not isinstance(child, nn.Module):
            names = [name for name, _ in target.named_children()]
            raise PodiumError(
                f'freeze/unfreeze: the model has no module "{module}" ({type(target).__name__} '
                f'has no child "{part}"); children: {", ".join(names) or "none"}'
            )
        target = child
    return target


def _feature_module_names(module: nn.Module) -> Optional[List[str]]:
    info = getattr(module, "feature_info", None)
    if info is None:
        return None
    if hasattr(info, "module_name"):  # timm FeatureInfo (features_only models)
        names = info.module_name()
    else:  # a timm classifier: a list of dicts
        try:
            names = [entry["module"] for entry in info]
        except (TypeError, KeyError):
            return None
    return [str(name).replace(".", "_") for name in names] or None


def _units(module: nn.Module, feature_names: Sequence[str]) -> List[Tuple[str, nn.Module]]:
    """Children in forward order, expanded where a feature output lies inside a child.

    Names are compared with "." replaced by "_": timm's FeatureListNet flattens `stages.0`
    into a child named `stages_0`, while `feature_info` keeps the dotted name.
    """
    units: List[Tuple[str, nn.Module]] = []

    def visit(prefix: str, parent: nn.Module) -> None:
        for name, child in parent.named_children():
            full = f"{prefix}_{name}" if prefix else name
            inside = any(f.startswith(full + "_") for f in feature_names)
            if inside and full not in feature_names and len(list(child.children())) > 0:
                visit(full, child)
            else:
                units.append((full, child))

    visit("", module)
    return units


def encoder_blocks(module: nn.Module) -> List[nn.Module]:
    """The blocks of an encoder, first (input side) to last; see the module docstring."""
    module = _unwrap(module)
    feature_names = _feature_module_names(module)
    inner = getattr(module, "encoder", None)
    if feature_names is None and isinstance(inner, nn.Module):
        inner_names = _feature_module_names(inner)
        if inner_names is not None:  # toolbelt GenericTimmEncoder → its timm features model
            module, feature_names = inner, inner_names
    if feature_names is not None:
        blocks: List[List[nn.Module]] = [[]]
        remaining = list(feature_names)
        for name, unit in _units(module, feature_names):
            blocks[-1].append(unit)
            if remaining and name == remaining[0]:
                remaining.pop(0)
                blocks.append([])
        if not remaining:
            grouped = [nn.ModuleList(b) for b in blocks if any(True for _ in _params(b))]
            if grouped:
                return grouped
    children = [child for _, child in module.named_children()]
    blocks = [child for child in children if any(True for _ in child.parameters())]
    if not blocks:
        raise PodiumError(
            f"freeze/unfreeze: {type(module).__name__} has no child module with parameters"
        )
    return blocks


def _params(modules: Iterable[nn.Module]):
    for module in modules:
        yield from module.parameters()


def select_blocks(
    blocks: Sequence[nn.Module],
    first: Optional[int] = None,
    last: Optional[int] = None,
    all_but_last: Optional[int] = None,
    where: str = "FreezeCallback",
) -> List[nn.Module]:
    """All blocks, or the `first` N, the `last` N, or all but the last N (at most one given)."""
    given = {
        k: v
        for k, v in (("first", first), ("last", last), ("all_but_last", all_but_last))
        if v is not None
    }
    if len(given) > 1:
        raise PodiumError(f"{where}: give at most one of first, last, all_but_last; got {given}")
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PodiumError(f"{where}: {key} must be an integer >= 0, got {value!r}")
        if value > len(blocks):
            raise PodiumError(
                f"{where}: {key}={value}, but the module has only {len(blocks)} blocks"
            )
    blocks = list(blocks)
    if first is not None:
        return blocks[:first]
    if last is not None:
        return blocks[len(blocks) - last :]
    if all_but_last is not None:
        return blocks[: len(blocks) - all_but_last]
    return blocks


def set_trainable(modules: Iterable[nn.Module], trainable: bool) -> List[nn.Parameter]:
    """`requires_grad_(trainable)` on every parameter of `modules`; returns the parameters."""
    params = list(_params(modules))
    for param in params:
        param.requires_grad_(trainable)
    return params


class _BlocksCallback(Callback):
    def __init__(self, module, first, last, all_but_last, order):
        super().__init__(order=order, node=CallbackNode.all)
        self.module = module
        self.first = first
        self.last = last
        self.all_but_last = all_but_last
        if sum(v is not None for v in (first, last, all_but_last)) > 1:
            raise PodiumError(
                f"{type(self).__name__}: give at most one of first, last, all_but_last"
            )

    def blocks(self, runner) -> List[nn.Module]:
        return self.select(runner.model)

    def select(self, model) -> List[nn.Module]:
        """The selected blocks of the model; no first / last / all_but_last: the whole module."""
        module = resolve_module(model, self.module)
        if self.first is None and self.last is None and self.all_but_last is None:
            return [module]
        return select_blocks(
            encoder_blocks(module),
            first=self.first,
            last=self.last,
            all_but_last=self.all_but_last,
            where=type(self).__name__,
        )


class FreezeCallback(_BlocksCallback):
    """Freezes encoder blocks when the stage starts (they stay frozen for the stage, or until
    an `UnfreezeCallback` epoch).

    Args:
        first / last / all_but_last: which blocks (at most one; none → all blocks).
        module: dotted path of the module in the model (default `encoder`, else the model).
        freeze_bn: also keep the BatchNorm layers of frozen blocks in eval mode during training
            (running mean/var fixed: the usual choice with pretrained weights and small
            batches). A BatchNorm counts as frozen while its own parameters are frozen, so it
            trains again after an unfreeze. Default false: statistics keep updating.
    """

    def __init__(
        self,
        first: Optional[int] = None,
        last: Optional[int] = None,
        all_but_last: Optional[int] = None,
        module: Optional[str] = None,
        freeze_bn: bool = False,
    ):
        # Internal: before the optimizer callback, runs first at stage and loader start
        super().__init__(module, first, last, all_but_last, CallbackOrder.Internal)
        self.freeze_bn = bool(freeze_bn)
        self._frozen: List[nn.Module] = []

    def freeze(self, model) -> None:
        self._frozen = self.select(model)
        set_trainable(self._frozen, False)

    def on_stage_start(self, runner) -> None:
        self.freeze(runner.model)

    def on_loader_start(self, runner) -> None:
        # the runner has just called model.train(); put frozen BatchNorms back in eval mode
        if not (self.freeze_bn and runner.is_train_loader):
            return
        for block in self._frozen:
            for layer in block.modules():
                params = list(layer.parameters(recurse=False))
                if isinstance(layer, _BATCHNORM) and not any(p.requires_grad for p in params):
                    layer.eval()


class UnfreezeCallback(_BlocksCallback):
    """Makes encoder blocks trainable from epoch `epoch` of the stage (1-based) on.

    Args:
        epoch: the first stage epoch that trains the blocks (epoch 3: epochs 1-2 frozen).
        first / last / all_but_last: which blocks (at most one; none → all blocks).
        module: dotted path of the module in the model (default `encoder`, else the model).
        lr: learning rate of the param group added for parameters the optimizer does not hold
            (default: the first group's current lr). Unused with `catalyst-dl run`, whose
            optimizer holds every parameter.
    """

    def __init__(
        self,
        epoch: int,
        first: Optional[int] = None,
        last: Optional[int] = None,
        all_but_last: Optional[int] = None,
        module: Optional[str] = None,
        lr: Optional[float] = None,
    ):
        super().__init__(module, first, last, all_but_last, CallbackOrder.Internal)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise PodiumError(f"UnfreezeCallback: epoch must be an integer >= 1, got {epoch!r}")
        self.epoch = epoch
        self.lr = lr
        self.added_params: List[nn.Parameter] = []

    def on_stage_start(self, runner) -> None:
        self.blocks(runner)  # a wrong module / count fails now, not epochs later

    def on_epoch_start(self, runner) -> None:
        if runner.stage_epoch_step != self.epoch:
            return
        params = set_trainable(self.blocks(runner), True)
        optimizer = runner.optimizer
        if optimizer is None or isinstance(optimizer, dict):
            return
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [p for p in params if id(p) not in held]
        if not missing:
            return
        lr = float(self.lr) if self.lr is not None else optimizer.param_groups[0]["lr"]
        optimizer.add_param_group({"params": missing, "lr": lr, "initial_lr": lr})
        self.added_params = missing
        scheduler = runner.scheduler
        if scheduler is not None and isinstance(getattr(scheduler, "base_lrs", None), list):
            scheduler.base_lrs.append(lr)


def stage_freezing(model: nn.Module, freeze_encoder: bool) -> nn.Module:
    """The stage key `freeze_encoder`: true is `FreezeCallback(module="encoder")` applied now;
    false trains the encoder again. Returns the model without (D)DP wrappers."""
    model = _unwrap(model)
    encoder = getattr(model, "encoder", None)
    if freeze_encoder and not isinstance(encoder, nn.Module):
        raise PodiumError(
            f"freeze_encoder needs a model with an `.encoder` module; "
            f"{type(model).__name__} has none"
        )
    if freeze_encoder:
        FreezeCallback(module="encoder").freeze(model)
    elif isinstance(encoder, nn.Module):
        set_trainable([encoder], True)
    return model
