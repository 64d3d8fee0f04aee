"""The only place in podium that patches Catalyst 21.12 (and quiets neptune) for today's stack.

Imported first by `podium/__init__.py`, so `catalyst-dl run`, spawned DDP workers and
`podium …` commands all run patched. One fix per module, each documenting why it exists:

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

`apply()` is idempotent; it runs once on import.
"""

from podium.compat import (
    deferred_imports,
    distutils_version,
    import_noise,
    neptune_noise,
    tensorboard,
    tensorboard_exit,
)

__all__ = ["apply"]

_applied = False


def apply() -> None:
    """Apply every fix once (later calls do nothing)."""
    global _applied
    if _applied:
        return
    deferred_imports.apply()  # before anything imports neptune (catalyst does)
    distutils_version.apply()  # first: every fix below imports Catalyst
    tensorboard.check()
    neptune_noise.apply()  # must run before catalyst imports neptune.new

    import_noise.apply()

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
    _applied = True


apply()
