"""`catalyst-dl run` config loading: one clear line for a broken YAML file or `_target_`.

Catalyst parses the YAML files and then builds the runner, engine, model, ... by resolving
every `_target_`; a syntax error surfaces as a yaml ParserError traceback, a misspelled
`_target_` as `LookupError: No factory with name ...` with no hint of where. This fix wraps
`catalyst.dl.scripts._misc.parse_args_uargs` (the function that reads the files) so that right
after reading, before anything is built or written:
- a YAML error names the file, line and column;
- every `_target_` is checked (`podium.targets.check_targets`): the key path, the name and a
  "did you mean"; with PODIUM_SAFE_TARGETS=1, only allow-listed packages.
"""
import functools

from podium.compat._patching import rebind
from podium.errors import PodiumError

__all__ = ["apply"]


def _checked(parse_args_uargs):
    @functools.wraps(parse_args_uargs)
    def wrapper(args, unknown_args):
        import yaml

        from podium.targets import check_targets

        try:
            args, config = parse_args_uargs(args, unknown_args)
        except yaml.YAMLError as error:
            raise PodiumError(_describe(error, getattr(args, "configs", None))) from None
        check_targets(config)
        return args, config

    wrapper._podium_checked = True
    return wrapper


def _describe(error, configs) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return f"config {', '.join(map(str, configs or []))}: invalid YAML: {problem}"
    return f"config {mark.name}: invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def apply() -> None:
    from catalyst.dl.scripts import _misc

    original = _misc.parse_args_uargs
    if getattr(original, "_podium_checked", False):
        return
    rebind(original, _checked(original))
