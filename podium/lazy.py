"""A package's re-exports, imported when first read (PEP 562).

`podium.datasets` and `podium.inference` re-export their modules' public names. Imported
eagerly, they made every import of one of their modules import the whole package — torch,
albumentations, pytorch-toolbelt: seconds — so `podium samples --help` or `podium report`
paid for the training stack at start-up. `from podium.datasets import read_split` still works,
and imports split.py only.
"""

import importlib
import sys
import types
from typing import Mapping

__all__ = ["LazyPackage", "lazy_exports"]


class LazyPackage(types.ModuleType):
    """A package whose `_lazy_exports` ({name: module that defines it}) load on first read."""

    def __getattr__(self, name: str):
        module = self.__dict__.get("_lazy_exports", {}).get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value) -> None:
        # Importing submodule `name` binds it here; a function exported under the same name
        # (podium.datasets.letterbox) keeps the name, as the eager `from … import` did.
        exports = self.__dict__.get("_lazy_exports", {})
        if isinstance(value, types.ModuleType) and exports.get(name) == value.__name__:
            if value.__name__ == f"{self.__name__}.{name}":
                value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self.__dict__.get("_lazy_exports", {})))


def lazy_exports(package: str, exports: Mapping[str, str]) -> None:
    """Make `package` (call it from its __init__) export `exports` ({name: module}) lazily; its
    `__all__` is their names."""
    module = sys.modules[package]
    module._lazy_exports = dict(exports)
    module.__all__ = list(exports)
    module.__class__ = LazyPackage
