"""One helper shared by the fixes: re-point every name bound to a Catalyst function."""

import sys

__all__ = ["rebind"]


def rebind(original, replacement, prefix: str = "catalyst") -> int:
    """Replace `original` by `replacement` in every imported `prefix*` module namespace.

    Catalyst imports helpers by name (`from catalyst.utils.distributed import all_gather`), so
    patching the defining module alone leaves stale copies in the modules that use them.
    Returns the number of bindings changed (0 on a second call: idempotent).
    """
    changed = 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == prefix or name.startswith(prefix + ".")):
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                setattr(module, attr, replacement)
                changed += 1
    return changed
