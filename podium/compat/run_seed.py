"""`catalyst-dl run` ignores the config's `args/seed`.

Catalyst's run script declares `--seed` with `default=42`, and `parse_args_uargs` lets a
command-line value win over the config's `args:` block whenever it is not None, so
`args: {seed: 7}` in a YAML trains (and dumps `_config.json`) with seed 42. The fix declares
`--seed` without a default: the config's `args/seed` (or an `--args/seed=7:int` override) is
used, `--seed N` still wins over both, and with neither the seed is 42 as before
(`seed_or_default`, called by the checked `parse_args_uargs` of `config_loading`).
"""

import functools

__all__ = ["apply", "SEED_DEFAULT", "seed_or_default"]

SEED_DEFAULT = 42  # catalyst-dl run's default


def _without_seed_default(build_args):
    @functools.wraps(build_args)
    def wrapper(parser):
        parser = build_args(parser) or parser
        for action in parser._actions:
            if "--seed" in action.option_strings:
                action.default = None
                action.help = f"random seed (default: the config's args/seed, else {SEED_DEFAULT})"
        return parser

    wrapper._podium_seed = True
    return wrapper


def seed_or_default(args, config) -> None:
    """After the configs are merged: no --seed and no args/seed → 42, in args and config."""
    if hasattr(args, "seed") and args.seed is None:
        args.seed = SEED_DEFAULT
        config.setdefault("args", {})["seed"] = SEED_DEFAULT


def apply() -> None:
    from catalyst.dl.scripts import run

    if not getattr(run.build_args, "_podium_seed", False):
        run.build_args = _without_seed_default(run.build_args)
