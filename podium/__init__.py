"""podium: a config-driven training kit for competition-grade computer vision on Catalyst.

Importing podium first applies `podium.compat` (fixes for Catalyst 21.12 on today's torch,
tensorboardX and neptune), so every entry point — `catalyst-dl run`, DDP workers,
`podium predict` — runs patched.
"""

from podium import compat  # noqa: F401  (side effect: patches; must stay first)
from podium.errors import PodiumError, install_excepthook

__version__ = "0.1.0"

install_excepthook()

__all__ = ["PodiumError", "__version__"]
