"""Run a fix around the first import of a module (Catalyst, neptune, pytorch-toolbelt).

The fixes patch Catalyst, so applying them means importing Catalyst, torch and neptune: ~6 s
that `import podium` paid in every process, `podium --help` included. Instead each fix waits
for its module: `around(name, fix)` registers `fix(load)`, called with `load` (executes the
module) when `name` is first imported, so nothing that imports Catalyst can use it unpatched.
If `name` is imported already, `fix` runs at once with a `load` that does nothing.
`around_each(prefix, fix)`: the same around every module whose name starts with `prefix`.
"""

import importlib.abc
import sys
from typing import Callable, Dict, List

__all__ = ["around", "around_each", "pending", "FINDER"]

Fix = Callable[[Callable[[], None]], None]

_FIXES: Dict[str, List[Fix]] = {}  # name: fixes, each run once
_EACH: Dict[str, Fix] = {}  # prefix: fix, run around every module it starts


class _Finder(importlib.abc.MetaPathFinder):
    """First on `sys.meta_path`: finds a watched module with the finders after it and wraps
    that one loader's `exec_module` (an instance attribute, removed after the first run)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _FIXES and not _each(fullname):
            return None
        spec = _spec_from_others(self, fullname, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module):
            fixes = _FIXES.pop(fullname, [])
            try:
                _run(_each(fullname) + fixes, lambda: execute(module))
            except BaseException:
                if fixes:  # a failed import may be retried
                    _FIXES.setdefault(fullname, [])[:0] = fixes
                raise
            finally:
                vars(loader).pop("exec_module", None)

        loader.exec_module = exec_module
        return spec


def _spec_from_others(finder, fullname, path, target):
    for other in sys.meta_path:
        find_spec = getattr(other, "find_spec", None)
        if other is finder or find_spec is None:
            continue
        spec = find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


def _each(fullname: str) -> List[Fix]:
    return [fix for prefix, fix in _EACH.items() if fullname.startswith(prefix)]


def _run(fixes: List[Fix], load: Callable[[], None]) -> None:
    """Nest the fixes around `load`: the first registered is outermost."""
    if not fixes:
        load()
        return
    fixes[0](lambda: _run(fixes[1:], load))


FINDER = _Finder()


def around(name: str, fix: Fix) -> None:
    """Call `fix(load)` when `name` is first imported (now, if it is imported already)."""
    if name in sys.modules:
        fix(lambda: None)
        return
    _FIXES.setdefault(name, []).append(fix)
    if FINDER not in sys.meta_path:
        sys.meta_path.insert(0, FINDER)


def around_each(prefix: str, fix: Fix) -> None:
    """Call `fix(load)` around the first import of every module named `prefix…` from now on."""
    _EACH[prefix] = fix
    if FINDER not in sys.meta_path:
        sys.meta_path.insert(0, FINDER)


def pending() -> List[str]:
    """Names whose fixes wait for their import."""
    return sorted(_FIXES)
