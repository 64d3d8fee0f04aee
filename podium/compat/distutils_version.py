"""`distutils.version.LooseVersion` for Catalyst 21.12 on Python 3.12+, where `distutils` is gone.

`catalyst/callbacks/__init__.py` starts with `from distutils.version import LooseVersion` (to
compare `torch.__version__` with "1.8.1"), so without `distutils` every `catalyst-dl run`,
`podium …` command and `import catalyst.dl` fails with `No module named 'distutils'`. It is
Catalyst's only use of `distutils` or of any other module removed in 3.12 / 3.13.

What: a finder appended to the *end* of `sys.meta_path` that serves a minimal `distutils`
package whose only submodule is `version`, with a `LooseVersion` (and `StrictVersion`) built on
`packaging.version`. Being last, it is used only when nothing else provides `distutils`: the
standard library's (3.11) and setuptools' `_distutils_hack` (when setuptools is installed) still
win, so podium changes nothing where `distutils` exists. `distutils.<anything else>` stays a
`ModuleNotFoundError`, as on a bare 3.12.

Why not setuptools' vendored copy (`setuptools._distutils`, which `_distutils_hack` maps to
`distutils`): a 3.12+ venv has no setuptools (only torch's dependency markers bring it), the hack
is off under `SETUPTOOLS_USE_DISTUTILS=stdlib`, importing it imports all of setuptools, and its
`LooseVersion` warns "deprecated, use packaging.version". `packaging` is installed with the
stack anyway (matplotlib, pytest, timm, … require it) and is what that warning points to.
Catalyst only compares PEP 440 versions; a string that is not one compares by its leading
release numbers ("2.1.0-custom" as 2.1.0).
"""

import importlib.abc
import importlib.machinery
import re
import sys
import types

__all__ = ["LooseVersion", "StrictVersion", "apply", "FINDER"]

_LEADING_RELEASE = re.compile(r"\s*v?(\d+(?:\.\d+)*)")


def _parse(vstring: str):
    from packaging.version import InvalidVersion, Version

    try:
        return Version(vstring)
    except InvalidVersion:
        match = _LEADING_RELEASE.match(vstring)
        if match is None:
            raise ValueError(f"invalid version number {vstring!r}") from None
        return Version(match.group(1))


class LooseVersion:
    """The subset of `distutils.version.LooseVersion` Catalyst uses: build from a string and
    compare with another version or a string."""

    def __init__(self, vstring=None):
        if vstring is not None:
            self.parse(vstring)

    def parse(self, vstring: str) -> None:
        self.vstring = str(vstring)
        self.version = _parse(self.vstring)

    def _other(self, other):
        if isinstance(other, LooseVersion):
            return other.version
        if isinstance(other, str):
            return _parse(other)
        return NotImplemented

    def _compare(self, other, op):
        other = self._other(other)
        return other if other is NotImplemented else op(self.version, other)

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def __hash__(self):
        return hash(self.version)

    def __str__(self):
        return self.vstring

    def __repr__(self):
        return f"{type(self).__name__} ('{self.vstring}')"


class StrictVersion(LooseVersion):
    """Same comparisons (kept only so `from distutils.version import StrictVersion` imports)."""


def _version_module() -> types.ModuleType:
    module = types.ModuleType("distutils.version", doc="podium's LooseVersion on packaging.version")
    module.LooseVersion = LooseVersion
    module.StrictVersion = StrictVersion
    module.__podium_shim__ = True
    return module


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last-resort finder for `distutils` and `distutils.version` only."""

    podium_distutils_shim = True

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "distutils":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if fullname == "distutils.version":
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        if spec.name == "distutils.version":
            return _version_module()
        module = types.ModuleType("distutils", doc="podium's stand-in: only distutils.version")
        module.__path__ = []
        module.__podium_shim__ = True
        return module

    def exec_module(self, module):
        pass


FINDER = _Finder()


def apply() -> None:
    """Append the finder to `sys.meta_path` once (idempotent)."""
    if not any(getattr(finder, "podium_distutils_shim", False) for finder in sys.meta_path):
        sys.meta_path.append(FINDER)
