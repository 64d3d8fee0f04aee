"""Load `rfc3987_syntax` when it is first used, not when jsonschema is imported.

`import catalyst` imports neptune (catalyst/settings.py), whose bravado client imports
jsonschema, which imports `rfc3987_syntax` for its optional "iri" format checks. That module
builds fifteen Lark parsers at import: seconds of every `podium` and `catalyst-dl` start-up
(docs/install.md has the figure), spent by every command, DDP rank and loader worker that
starts an interpreter, though only a neptune client talking to a server may ever check an IRI.

A stand-in module takes its place in `sys.modules`; its `is_valid_syntax` (what jsonschema
imports) and any other attribute import the real module on first use, which then replaces the
stand-in. Results are the real module's.
"""

import importlib
import importlib.util
import sys
import types

__all__ = ["DEFERRED", "apply"]

DEFERRED = "rfc3987_syntax"


class DeferredModule(types.ModuleType):
    """`name` in sys.modules until an attribute is read: then the real module, imported.
    Dunder names do not count: the import system asks for `__path__` on every `from … import`."""

    def __getattr__(self, attribute: str):
        if attribute.startswith("__") and attribute.endswith("__"):
            raise AttributeError(attribute)
        return getattr(load(self.__name__), attribute)


def load(name: str) -> types.ModuleType:
    """The real module `name`, imported now if only its stand-in is in sys.modules."""
    if isinstance(sys.modules.get(name), DeferredModule):
        del sys.modules[name]
    return importlib.import_module(name)


def is_valid_syntax(term: str, value: str) -> bool:
    """rfc3987_syntax.is_valid_syntax, from the real module."""
    return load(DEFERRED).is_valid_syntax(term, value)


def apply() -> None:
    """Put the stand-in in place, unless the module is imported already or not installed."""
    if DEFERRED in sys.modules:
        return
    spec = importlib.util.find_spec(DEFERRED)
    if spec is None:
        return
    stand_in = DeferredModule(DEFERRED)
    stand_in.__spec__ = spec
    stand_in.is_valid_syntax = is_valid_syntax
    sys.modules[DEFERRED] = stand_in
