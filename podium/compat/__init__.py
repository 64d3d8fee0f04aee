"""The only place in podium that patches Catalyst 21.12 (and quiets neptune) for today's stack.

Imported first by `podium/__init__.py`, so `catalyst-dl run`, spawned DDP workers and
`podium …` commands all run patched. One fix per module, each documenting why it exists:

- `distributed`: DDP metric sync (`all_gather`) on the process group's device, not "cuda".
- `metrics`: detach grad tensors before `float()` (the "requires_grad ... to a scalar" warning).
- `checkpoint`: atomic checkpoint writes, `weights_only=True` loads.
- `tensorboard`: clear error for a tensorboardX older than 2.6.
- `neptune_noise` / `startup`: hide neptune's `neptune.new` deprecation warning.
- `collections_abc`: `collections.Mapping` (gone in 3.10) for Catalyst's config merging, so
  `catalyst-dl run --config a.yml b.yml` works.
- `config_loading`: `catalyst-dl run` reports a broken YAML file or `_target_` in one line.
- `import_noise`: hide the FutureWarnings pytorch-toolbelt prints when imported.

`apply()` is idempotent; it runs once on import.
"""
from podium.compat import import_noise, neptune_noise, tensorboard

__all__ = ["apply"]

_applied = False


def apply() -> None:
    """Apply every fix once (later calls do nothing)."""
    global _applied
    if _applied:
        return
    tensorboard.check()
    neptune_noise.apply()  # must run before catalyst imports neptune.new

    import_noise.apply()

    from podium.compat import checkpoint, collections_abc, config_loading, distributed, metrics

    collections_abc.apply()
    config_loading.apply()
    distributed.apply()
    metrics.apply()
    checkpoint.apply()
    _applied = True


apply()
