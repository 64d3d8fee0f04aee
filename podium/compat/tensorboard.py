"""Fail early and clearly when tensorboardX is too old for this stack.

Catalyst 21.12 pins tensorboardX < 2.3, which breaks deep inside a run on protobuf >= 4
("Descriptors cannot be created directly") and numpy 2 ("only 0-dimensional arrays can be
converted"). With tensorboardX >= 2.6 Catalyst's TensorboardLogger and `dump_environment` work
unchanged (scalars, images, text), so the only fix needed is this check at import.
"""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["MIN_VERSION", "check"]

MIN_VERSION = (2, 6)


def _parse(text: str) -> tuple:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


def check(installed: str = None) -> None:
    """Raise ImportError unless tensorboardX >= MIN_VERSION is installed."""
    if installed is None:
        try:
            installed = version("tensorboardX")
        except PackageNotFoundError:
            installed = None
    if installed is None or _parse(installed) < MIN_VERSION:
        need = ".".join(map(str, MIN_VERSION))
        raise ImportError(
            f"podium needs tensorboardX >= {need} (found {installed or 'none'}); "
            "catalyst's own pin (<2.3) breaks on protobuf >= 4 and numpy 2. Run: "
            f"pip install 'tensorboardX>={need}'"
        )
