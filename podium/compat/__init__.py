"""The only place in podium that patches Catalyst 21.12 (and quiets neptune) for today's stack.

Imported first by `podium/__init__.py`, so `catalyst-dl run`, spawned DDP workers and
`podium …` commands all run patched. The fixes that need no third-party module apply at import;
the others apply when their module is first imported (`import_hooks`), so `import podium` stays
light (`podium --help` imports no Catalyst) and no code can import Catalyst unpatched.
One fix per module, each documenting why it exists:

- `distutils_version`: `distutils.version.LooseVersion` (imported by `catalyst.callbacks`) on
  Python 3.12+, where `distutils` is gone; applied first, before anything imports Catalyst.
- `distributed`: DDP metric sync (`all_gather`) on the process group's device, not "cuda".
- `metrics`: detach grad tensors before `float()` (the "requires_grad ... to a scalar" warning).
- `metric_aggregation`: `MetricAggregationCallback(mode="weighted_mean")` crashed in its
  constructor, and past that would have returned the plain sum.
- `checkpoint`: atomic checkpoint writes, `weights_only=True` loads.
- `callback_state`: counters of Catalyst's stateful callbacks (early stopping, checkpoint
  selection), which have no `state_dict`, for resuming mid-stage (used, not applied).
- `tensorboard`: clear error for a tensorboardX older than 2.6.
- `tensorboard_exit`: a tensorboardX writer left open no longer prints a traceback at exit on
  Python 3.12+ (no thread may start in an atexit callback).
- `neptune_noise` / `startup`: hide neptune's `neptune.new` deprecation warning.
- `deferred_imports`: `rfc3987_syntax` (imported through catalyst → neptune → jsonschema) is
  loaded on first use, not at every start-up.
- `collections_abc`: `collections.Mapping` (gone in 3.10) for Catalyst's config merging, so
  `catalyst-dl run --config a.yml b.yml` works.
- `run_seed`: `catalyst-dl run` uses the config's `args/seed` (its `--seed` default overwrote it).
- `config_loading`: `catalyst-dl run` reports a broken or missing config file, override,
  `_target_` or `_target_` argument in one line; overrides are literals only (Catalyst `eval`s
  them); YAML anchors are unshared, so an override changes one stage.
- `checkpoint` (also): a failed checkpoint write and a refused/unreadable checkpoint are one line.
- `import_noise`: hide the FutureWarnings pytorch-toolbelt prints when imported.
- `tune_flags` / `tune_main`: `catalyst-dl tune` (optuna): `--seed`, `--storage URL`, no
  `--expdir` needed, one logdir per trial, dotted sampler/pruner names (see each module).
- `cli_interrupts`: `catalyst-dl` stops on Ctrl-C / SIGTERM with one line (where, the last
  checkpoint, the command that continues) and status 130 / 143, not a traceback.
- `optuna_pruning`: `OptunaPruningCallback` reports by global epoch and keeps the trial's best
  over every stage, so multi-stage configs can be tuned.

- `import_hooks`: runs a fix around the first import of its module (the mechanism, no fix).

`install()` runs on import: the light fixes now, `apply()` (every fix, idempotent) when Catalyst
is first imported — at once if it is imported already.
"""

from podium.compat import (
    deferred_imports,
    distutils_version,
    import_hooks,
    import_noise,
    neptune_noise,
    tensorboard,
    tensorboard_exit,
)

__all__ = ["apply", "install"]

_applied = False
_applying = False
_deferring = 0  # fix modules being imported: Catalyst, imported by one, waits for it to finish
_pending = False  # Catalyst was imported while _deferring: `apply` runs when they finish


def apply() -> None:
    """Apply every fix once, importing Catalyst (later calls do nothing)."""
    global _applied, _applying, _pending
    if _applied or _applying:  # _applying: the import of Catalyst below calls it again
        return
    _applying, _pending = True, False
    try:
        _apply()
    finally:
        _applying = False
    _applied = True


def _apply() -> None:
    _install_light()
    neptune_noise.apply()  # must run before catalyst imports neptune.new

    from podium.compat import (
        checkpoint,
        collections_abc,
        config_loading,
        distributed,
        metric_aggregation,
        metrics,
        run_seed,
    )

    collections_abc.apply()
    config_loading.apply()
    run_seed.apply()
    distributed.apply()
    metrics.apply()
    metric_aggregation.apply()
    checkpoint.apply()
    tensorboard_exit.apply()

    # after config_loading: catalyst.dl.scripts.tune then imports the checked parse_args_uargs
    from podium.compat import optuna_pruning, tune_flags, tune_main

    tune_flags.apply()
    tune_main.apply()
    optuna_pruning.apply()

    from podium.compat import cli_interrupts

    cli_interrupts.apply()


def _install_light() -> None:
    """The fixes that import no third-party module and must act before Catalyst is imported."""
    deferred_imports.apply()  # before anything imports neptune (catalyst does)
    distutils_version.apply()  # first: every fix in `apply` imports Catalyst
    tensorboard.check()


def _after(fix):
    """A fix for `import_hooks.around` that runs once its module is executed."""

    def run(load):
        load()
        fix()

    return run


def _on_catalyst(load) -> None:
    """Catalyst's first import: every fix, or — when a fix module imported it (`from
    podium.compat import checkpoint` first) — once that module is whole, as `apply` needs it."""
    global _pending
    load()
    if _deferring:
        _pending = True
    else:
        apply()


def _fix_module(load) -> None:
    """Around the import of each podium.compat module: see `_on_catalyst`."""
    global _deferring
    _deferring += 1
    try:
        load()
    finally:
        _deferring -= 1
    if not _deferring and _pending:
        apply()


def install() -> None:
    """The light fixes now; the others when neptune, pytorch-toolbelt or Catalyst is imported."""
    _install_light()
    # neptune's import puts its "always" filter first: ours goes after it, before neptune.new
    import_hooks.around("neptune", _after(neptune_noise.apply))
    import_hooks.around("pytorch_toolbelt", import_noise.around)
    import_hooks.around_each(__name__ + ".", _fix_module)
    import_hooks.around("catalyst", _on_catalyst)


install()
