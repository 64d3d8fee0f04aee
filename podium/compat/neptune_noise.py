"""Silence neptune's `neptune.new` deprecation warning when podium is imported before catalyst.

catalyst/settings.py does `import neptune.new`, which makes neptune 1.x print a
NeptuneDeprecationWarning that users cannot act on. neptune's import puts its own "always"
filter for that category first, so the "ignore" filter must be added after neptune is imported
and before `neptune.new` is. When catalyst was imported first (`catalyst-dl run`), the warning
is already printed; the startup hook in `podium.compat.startup` covers that case.
"""

import sys
import warnings

__all__ = ["MESSAGE", "apply"]

# same text as podium.compat.startup.MESSAGE (not imported: `python -m podium.compat.startup`
# must find that module not yet imported)
MESSAGE = "You're importing the Neptune client library via the deprecated `neptune.new` module"


def apply() -> None:
    if "neptune.new" in sys.modules:
        return
    try:
        from neptune.common.warnings import NeptuneDeprecationWarning
    except ImportError:  # neptune is optional for catalyst
        return
    warnings.filterwarnings("ignore", message=MESSAGE, category=NeptuneDeprecationWarning)
