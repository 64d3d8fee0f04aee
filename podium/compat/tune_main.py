"""`catalyst-dl tune` (optuna) on podium configs: podium's version of Catalyst 21.12's tune main.

`catalyst.dl.scripts.tune.main` reads the configs, builds the optuna study from the config's
`study:` block and runs an `objective` closure per trial: each "trial.suggest_...(...)" string of
the config is replaced by the trial's suggestion, the runner trains, and the trial's score is
what `catalyst.callbacks.OptunaPruningCallback` reported. The defects sit inside that function
and its closure, so they cannot be patched one by one: this module replaces the function, with
the same flags, `study:` block and suggestion strings, and these fixes:

1. without `--expdir` (which `catalyst-dl run` does not need either) every trial failed with
   `TypeError: expected str, bytes or os.PathLike object, not NoneType` (`Path(args.expdir)`);
2. every trial trained in the same `args/logdir`, overwriting the previous trial's checkpoints
   and appending to its CSV logs: trial k now writes `<args/logdir>/trial_k`;
3. `study/sampler` and `study/pruner` took bare names (`TPESampler`), looked up in
   `optuna.samplers` / `optuna.pruners`, which podium's `_target_` check refuses; here they are
   full dotted names, as every `_target_` of a podium config (`optuna.samplers.TPESampler`);
4. `--direction`, `--storage` or `--study-name` given both as a flag and in `study:` stopped
   with `TypeError: got multiple values for keyword argument`: the flag wins;
5. suggestion strings inside lists (e.g. an augmentation's argument) were left as strings, and
   so was a misspelt one (`trial.sugest_float(...)` became the learning rate); strings that
   start with `trial.` are evaluated too, and one that cannot be names its key path;
6. with neither `--seed` (see tune_flags) nor `args/seed` it stopped on the missing seed: the
   seed is then 42, ConfigRunner's default;
7. a config without an OptunaPruningCallback trained a whole trial and then failed with
   `AttributeError: 'Trial' object has no attribute 'best_score'`: now one error line before
   anything trains.
Also, a `sqlite:///path/study.db` storage gets its folder created (optuna creates only the file).
"""

import os
from copy import deepcopy
from pathlib import Path
from typing import Any, Dict, Optional

from podium.compat.run_seed import seed_or_default
from podium.errors import PodiumError

__all__ = ["apply", "main", "suggest", "trial_logdir", "TRIAL_DIR", "UPSTREAM"]

TRIAL_DIR = "trial_{number}"
SUGGEST = "trial.suggest_"


def suggest(trial, config: Any, where: str = "") -> Any:
    """A copy of `config` with every "trial.suggest_..." (or "trial.…") string replaced by its value
    for `trial`."""
    if isinstance(config, dict):
        return type(config)(
            (key, suggest(trial, value, f"{where}/{key}" if where else str(key)))
            for key, value in config.items()
        )
    if isinstance(config, (list, tuple)):
        return type(config)(
            suggest(trial, value, f"{where}[{i}]") for i, value in enumerate(config)
        )
    if isinstance(config, str) and (SUGGEST in config or config.strip().startswith("trial.")):
        try:
            return eval(config, {"trial": trial})  # noqa: S307 - Catalyst's syntax: a config is code
        except Exception as error:
            raise PodiumError(
                f'{where}: cannot evaluate "{config}" ({type(error).__name__}: {error}); '
                "expected an expression like trial.suggest_float('lr', 1e-4, 1e-2, log=True)"
            ) from None
    return config


def trial_logdir(config: Dict[str, Any], number: int) -> Optional[str]:
    """`<args/logdir>/trial_<number>` (None without args/logdir: Catalyst then makes a fresh
    one)."""
    logdir = (config.get("args") or {}).get("logdir")
    return None if logdir is None else os.path.join(str(logdir), TRIAL_DIR.format(number=number))


def _optuna_object(params: Optional[Dict[str, Any]], module, where: str):
    """A sampler / pruner from `{_target_: optuna.samplers.X, ...}` (X must live in `module`)."""
    if not params:
        return None
    params = dict(params)
    target = params.pop("_target_", None)
    prefix = module.__name__ + "."
    name = target[len(prefix) :] if isinstance(target, str) and target.startswith(prefix) else None
    factory = getattr(module, name, None) if name and "." not in name else None
    if factory is None:
        raise PodiumError(
            f"{where}/_target_ must name a class of {module.__name__}, e.g. {prefix}"
            f"{'TPESampler' if 'sampler' in module.__name__ else 'MedianPruner'}; got {target!r}"
        )
    return factory(**params)


def _check_scored(config: Dict[str, Any]) -> None:
    """Some stage must have an OptunaPruningCallback: it reports the trial's score."""
    from catalyst.callbacks import OptunaPruningCallback
    from catalyst.registry import REGISTRY

    for stage in (config.get("stages") or {}).values():
        for callback in ((stage or {}).get("callbacks") or {}).values():
            target = callback.get("_target_") if isinstance(callback, dict) else None
            try:
                factory = REGISTRY.get(target) if isinstance(target, str) else None
            except Exception:  # an unresolvable target is reported when the runner builds it
                continue
            if isinstance(factory, type) and issubclass(factory, OptunaPruningCallback):
                return
    raise PodiumError(
        "catalyst-dl tune scores a trial by what catalyst.callbacks.OptunaPruningCallback "
        "reports, but no stage has one; add to the stage's callbacks: optuna: {_target_: "
        "catalyst.callbacks.OptunaPruningCallback, loader_key: valid, metric_key: dice, "
        "minimize: false}"
    )


def _sqlite_folder(storage: Optional[str]) -> None:
    prefix = "sqlite:///"
    if isinstance(storage, str) and storage.startswith(prefix) and storage != prefix + ":memory:":
        Path(storage[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


def main(args, unknown_args):
    """Runs `catalyst-dl tune` (Catalyst's flags and config, with the fixes above)."""
    import optuna
    from catalyst.dl.scripts import tune
    from catalyst.utils.distributed import get_rank
    from catalyst.utils.misc import set_global_seed
    from catalyst.utils.sys import dump_code, dump_environment
    from catalyst.utils.torch import prepare_cudnn

    args, config = tune.parse_args_uargs(args, unknown_args)
    seed_or_default(args, config)  # neither --seed nor args/seed: 42 (podium.compat.run_seed)
    set_global_seed(args.seed)
    prepare_cudnn(args.deterministic, args.benchmark)
    study_params = dict(config.pop("study", None) or {})
    _check_scored(config)
    sampler = _optuna_object(study_params.pop("sampler", None), optuna.samplers, "study/sampler")
    pruner = _optuna_object(study_params.pop("pruner", None), optuna.pruners, "study/pruner")
    for key in ("direction", "storage", "study_name"):
        value = study_params.pop(key, None)
        flag = getattr(args, key, None)
        study_params[key] = flag if flag is not None else value
    study_params["direction"] = study_params["direction"] or "minimize"
    _sqlite_folder(study_params["storage"])

    def objective(trial: optuna.Trial) -> float:
        trial_config = suggest(trial, deepcopy(config))
        logdir = trial_logdir(trial_config, trial.number)
        if logdir is not None:
            trial_config["args"]["logdir"] = logdir
        runner = tune.get_config_runner(expdir=args.expdir, config=trial_config)
        runner._trial = trial  # what OptunaPruningCallback reads (Catalyst's own hook)
        if get_rank() <= 0:
            dump_environment(logdir=runner.logdir, config=trial_config, configs_path=args.configs)
            dump_code(expdir=args.expdir, logdir=runner.logdir)
        runner.run()
        score = getattr(trial, "best_score", None)
        if score is None:
            raise PodiumError(
                f"trial {trial.number} reported no score (did a stage with the "
                "OptunaPruningCallback run an epoch?)"
            )
        return float(score)

    study = optuna.create_study(sampler=sampler, pruner=pruner, **study_params)
    study.optimize(
        objective,
        n_trials=args.n_trials,
        timeout=args.timeout,
        n_jobs=args.n_jobs or 1,
        gc_after_trial=args.gc_after_trial,
        show_progress_bar=args.show_progress_bar,
    )
    return study


UPSTREAM: Dict[str, Any] = {}  # Catalyst's own main, kept for the tests that show its defects


def apply() -> None:
    try:  # imports optuna: nothing to fix without it
        from catalyst.dl.scripts import tune
    except ImportError:
        return
    if tune.main is not main:
        UPSTREAM.setdefault("main", tune.main)
        tune.main = main
