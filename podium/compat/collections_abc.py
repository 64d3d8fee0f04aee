"""Catalyst 21.12 uses `collections.Mapping` / `collections.MutableMapping`, removed in Python 3.10.

`catalyst.utils.misc.merge_dicts` (so `catalyst-dl run --config a.yml b.yml`, which merges the
files) and `flatten_dict` crash with `AttributeError: module 'collections' has no attribute
'Mapping'`. Instead of re-adding the names to the standard library for every program, that
module gets its own `collections` namespace that also has the abc names. (Catalyst's contrib
collate_fn and self-supervised runner have the same defect; podium uses neither.)
"""

import collections
import collections.abc
import types

__all__ = ["apply"]


def _namespace() -> types.ModuleType:
    shim = types.ModuleType("collections", doc="collections with the pre-3.10 abc aliases")
    shim.__dict__.update({k: v for k, v in vars(collections).items() if not k.startswith("__")})
    for name in collections.abc.__all__:
        shim.__dict__.setdefault(name, getattr(collections.abc, name))
    return shim


def apply() -> None:
    from catalyst.utils import misc

    if misc.collections is collections:
        misc.collections = _namespace()
