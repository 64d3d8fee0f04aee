"""`catalyst-dl tune`'s command line: the `--seed` it lacks and the `--storage` it mistypes.

Catalyst 21.12's tune parser (`catalyst.dl.scripts.tune.build_args`):
- has no `--seed` (commented out), yet its main calls `set_global_seed(args.seed)`: without
  `args: {seed: ...}` in the config the search stops with `AttributeError: 'Namespace' object
  has no attribute 'seed'`, and `--seed 7` is not understood.
- declares `--storage` with `type=int`, so no storage URL (`sqlite:///study.db`) can be given
  on the command line ("invalid int value").

The fix wraps `build_args`: `--seed` (no default: the config's `args/seed` is used unless the
flag is given, and 42 without either, see podium.compat.tune_main) and `--storage` as a string.
(`catalyst-dl run`'s `--seed` defaults to 42, which overwrites the config's `args/seed`.)
"""

import functools

__all__ = ["apply", "SEED_DEFAULT"]

from podium.compat.run_seed import (
    SEED_DEFAULT,
)  # catalyst-dl run's default, and ConfigRunner's without args/seed


def _fixed(build_args):
    @functools.wraps(build_args)
    def wrapper(parser):
        parser = build_args(parser) or parser
        for action in parser._actions:
            if "--storage" in action.option_strings:
                action.type = str
                action.help = "optuna storage URL, e.g. sqlite:///study.db (default: in memory)"
        if not any("--seed" in action.option_strings for action in parser._actions):
            parser.add_argument(
                "--seed",
                type=int,
                default=None,
                help=f"seed of every trial (default: the config's args/seed, else {SEED_DEFAULT})",
            )
        return parser

    wrapper._podium_fixed = True
    return wrapper


def apply() -> None:
    try:  # imports optuna: nothing to fix without it
        from catalyst.dl.scripts import tune
    except ImportError:
        return
    if not getattr(tune.build_args, "_podium_fixed", False):
        tune.build_args = _fixed(tune.build_args)
