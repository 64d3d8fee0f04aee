"""`catalyst-dl run` config loading: one clear line for a broken config file, override or
`_target_`.

Catalyst parses the YAML files and then builds the runner, engine, model, ... by resolving
every `_target_`; a syntax error surfaces as a yaml ParserError traceback, a misspelled
`_target_` as `LookupError: No factory with name ...` with no hint of where. A missing file is
`ValueError: Path ... doesn't exist!`, a YAML list an unrelated TypeError, a config without a
runner `AssertionError: You should specify the ConfigRunner.`, and a command-line override goes
through `eval("%s(%s)" % (type, value))`: `--x=3` (no type) is a ValueError from tuple
unpacking, `--x=two:int` a NameError — and `--x=__import__('os').system(...):int` runs code.

This fix wraps `catalyst.dl.scripts._misc.parse_args_uargs` (the function that reads the files)
so that, before anything is built or written:
- each config file exists, is .yml/.yaml/.json and holds a mapping; a YAML error names the
  file, line and column;
- each override is `--path/to/key=value:type` with a known type and, unless `:str`, a Python
  literal as its value (so Catalyst's `eval` only ever sees a literal);
- every `_target_` is checked (`podium.targets.check_targets`): the key path, the name and a
  "did you mean"; with PODIUM_SAFE_TARGETS=1, only allow-listed packages.
It also wraps `get_config_runner`: a config without `runner: {_target_: ...}` is one line.

YAML anchors: Catalyst's loader returns ONE object for an anchor and its aliases
(`loaders: &loaders {...}` ... `loaders: *loaders`), so `--stages/train/loaders/batch_size=16:int`
silently changed every stage that shares the block. The files are loaded as plain trees
(`load_config` in Catalyst's run script returns an unshared copy): an override changes one key.
"""

import ast
import functools
import os
from typing import Mapping

from podium.compat._patching import rebind
from podium.errors import PodiumError, did_you_mean

__all__ = ["apply", "OVERRIDE_TYPES"]

# the `:type` suffixes of command-line overrides (Catalyst evaluates `type(value)`)
OVERRIDE_TYPES = ("str", "int", "float", "bool", "list", "dict", "tuple")
_OVERRIDE_FORM = "expected --path/to/key=value:type, e.g. --stages/train/num_epochs=5:int"


def _checked(parse_args_uargs):
    @functools.wraps(parse_args_uargs)
    def wrapper(args, unknown_args):
        import yaml

        from podium.targets import check_targets

        configs = getattr(args, "configs", None) or []
        try:
            for path in configs:
                _check_file(path)
        except yaml.YAMLError as error:
            raise PodiumError(_describe(error, configs)) from None
        for override in unknown_args or []:
            _check_override(override)
        try:
            args, config = parse_args_uargs(args, unknown_args)
        except yaml.YAMLError as error:
            raise PodiumError(_describe(error, configs)) from None
        check_targets(config)
        from podium.compat.run_seed import seed_or_default

        seed_or_default(args, config)
        return args, config

    wrapper._podium_checked = True
    return wrapper


def _check_file(path) -> None:
    from catalyst.utils.config import load_config

    if not os.path.isfile(path):
        raise PodiumError(f"config {path} does not exist; expected a YAML file (--config FILE.yml)")
    if os.path.splitext(str(path))[1].lower() not in (".yml", ".yaml", ".json"):
        raise PodiumError(f"config {path}: expected a .yml, .yaml or .json file")
    content = load_config(path, ordered=True)
    if not isinstance(content, Mapping):
        raise PodiumError(
            f"config {path} holds a {type(content).__name__}; expected a mapping of top-level "
            f"keys (args, runner, engine, model, loggers, data, stages)"
        )


def _check_override(override: str) -> None:
    if not override.startswith("--") or override.count("=") != 1:
        raise PodiumError(
            f"override {override!r}: {_OVERRIDE_FORM} (one '=': values may not contain '=')"
        )
    value = override.split("=")[1]
    if ":" not in value:
        raise PodiumError(f"override {override!r} has no :type; {_OVERRIDE_FORM}")
    content, kind = value.rsplit(":", 1)
    if kind not in OVERRIDE_TYPES:
        raise PodiumError(
            f"override {override!r}: unknown type :{kind}{did_you_mean(kind, OVERRIDE_TYPES)}; "
            f"expected one of: {', '.join(OVERRIDE_TYPES)}"
        )
    if kind != "str":
        try:
            ast.literal_eval(content)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise PodiumError(
                f"override {override!r}: {content!r} is not a value of type {kind}; "
                "expected a Python literal (5, 0.001, True, [0, 1]) or :str"
            ) from None


def _unshared(value):
    """A copy of a loaded YAML tree in which no mapping or list is shared (anchors/aliases)."""
    if isinstance(value, dict):
        return type(value)((key, _unshared(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def _tree_loading(load_config):
    @functools.wraps(load_config)
    def wrapper(*args, **kwargs):
        return _unshared(load_config(*args, **kwargs))

    wrapper._podium_checked = True
    return wrapper


def _describe(error, configs) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return f"config {', '.join(map(str, configs or []))}: invalid YAML: {problem}"
    return (
        f"config {mark.name}: invalid YAML at line {mark.line + 1}, "
        f"column {mark.column + 1}: {problem}"
    )


def _runner_checked(get_config_runner):
    @functools.wraps(get_config_runner)
    def wrapper(expdir, config):
        runner = config.get("runner")
        if not isinstance(runner, Mapping) or not runner.get("_target_"):
            raise PodiumError(
                "the config has no `runner: {_target_: ...}` block; expected e.g. "
                "runner: {_target_: podium.runners.PodiumRunner}"
            )
        return get_config_runner(expdir, config)

    wrapper._podium_checked = True
    return wrapper


def apply() -> None:
    from catalyst.dl.scripts import _misc

    original = _misc.parse_args_uargs
    if not getattr(original, "_podium_checked", False):
        rebind(original, _checked(original))
    original = _misc.get_config_runner
    if not getattr(original, "_podium_checked", False):
        rebind(original, _runner_checked(original))
    original = _misc.load_config
    if not getattr(original, "_podium_checked", False):
        _misc.load_config = _tree_loading(original)  # only the run script's binding
