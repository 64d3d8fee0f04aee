"""Checks of single argument and config values, with the one-line errors users see.

Builders, datasets, callbacks, inference settings and CLI options check their scalars the same
way: a bool is not a number (YAML `true` is not 1), NaN is in no interval, and the PodiumError
reads `<key> must be <expected>, got <value!r>`. One place, so the rule and the wording
cannot drift apart between copies.
"""

import math
from numbers import Integral, Real
from typing import Optional, Sequence

from podium.errors import PodiumError, did_you_mean

__all__ = [
    "POSITIVE",
    "is_int",
    "is_number",
    "in_interval",
    "check_int",
    "check_number",
    "check_probability",
    "check_bool",
    "check_choice",
    "check_subset",
]

POSITIVE = "a positive integer"  # the `expected` of check_int(value, key, 1) where messages say so


def is_int(value) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value, finite: bool = False) -> bool:
    """A real number (Python or numpy), not a bool; `finite`: not inf or NaN either."""
    return (
        isinstance(value, Real)
        and not isinstance(value, bool)
        and (not finite or math.isfinite(value))
    )


def in_interval(value, interval: str) -> bool:
    """`value` in `interval`, written as in the messages: "> 0", ">= 1", "[0, 1]", "(0, 1]" ...
    ("" is every number)."""
    if not interval:
        return True
    if interval.startswith(">="):
        return value >= float(interval[2:])
    if interval.startswith(">"):
        return value > float(interval[1:])
    low, high = (float(bound) for bound in interval[1:-1].split(","))
    above = low < value if interval[0] == "(" else low <= value
    return above and (value < high if interval[-1] == ")" else value <= high)


def _fail(value, key: str, expected: str):
    raise PodiumError(f"{key} must be {expected}, got {value!r}")


def check_int(
    value, key: str, minimum: Optional[int] = None, expected: Optional[str] = None
) -> int:
    """`value` as an int >= `minimum`; else "<key> must be an integer >= <minimum>, got ..."
    (`expected` replaces "an integer >= <minimum>")."""
    if not is_int(value) or (minimum is not None and value < minimum):
        _fail(
            value,
            key,
            expected or ("an integer" if minimum is None else f"an integer >= {minimum}"),
        )
    return int(value)


def check_number(
    value, key: str, interval: str = "", expected: Optional[str] = None, finite: bool = False
) -> float:
    """`value` as a float in `interval` (see `in_interval`); else "<key> must be a number in
    <interval>, got ..." (`expected` replaces "a number in <interval>")."""
    if not is_number(value, finite) or not in_interval(value, interval):
        where = f"in {interval}" if interval[:1] in ("[", "(") and interval else interval
        _fail(value, key, expected or f"a number {where}".strip())
    return float(value)


def check_probability(value, key: str, interval: str = "[0, 1]", note: str = "") -> float:
    """`value` as a float in `interval`; else "<key> must be a probability in <interval><note>"."""
    return check_number(value, key, interval, f"a probability in {interval}{note}")


def check_bool(value, key: str, note: str = "") -> bool:
    """`value` if it is true or false (not 0 / 1 / "yes"); else "<key> must be true or
    false<note>"."""
    if not isinstance(value, bool):
        _fail(value, key, f"true or false{note}")
    return value


def check_choice(value, choices: Sequence[str], key: str):
    """`value` if it is one of `choices`; else "<key> 'x' is not supported (did you mean ...);
    expected one of: a, b"."""
    if value not in choices:
        raise PodiumError(
            f"{key} {value!r} is not supported{did_you_mean(value, choices)}; "
            f"expected one of: {', '.join(choices)}"
        )
    return value


def check_subset(values, choices: Sequence[str], key: str) -> list:
    """`values` as a list if it is a non-empty list of `choices`; else "<key> must be a
    non-empty subset of [a, b], got ..."."""
    listed = isinstance(values, Sequence) and not isinstance(values, str) and len(values) > 0
    if not listed or any(value not in choices for value in values):
        _fail(values, key, f"a non-empty subset of {list(choices)}")
    return list(values)
