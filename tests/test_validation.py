"""podium.validation: the shared value checks and their one-line messages."""

import math

import numpy as np
import pytest

from podium.errors import PodiumError
from podium.validation import (
    POSITIVE,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_probability,
    in_interval,
    is_int,
    is_number,
)


def test_is_int_and_is_number_reject_bools():
    assert [is_int(v) for v in (3, np.int64(3), True, 3.0, "3", None)] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    assert [is_number(v) for v in (3, 0.5, np.float32(0.5), False, "1", None)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert (
        is_number(math.inf)
        and not is_number(math.inf, finite=True)
        and not is_number(math.nan, finite=True)
    )


@pytest.mark.parametrize(
    "interval, inside, outside",
    [
        ("> 0", [1e-9, 5], [0, -1, math.nan]),
        (">= 1", [1, 2.5], [0.999, math.nan]),
        ("[0, 1]", [0, 0.5, 1], [-0.1, 1.01, math.nan]),
        ("(0, 1]", [0.01, 1], [0, 1.5]),
        ("[0, 1)", [0, 0.99], [1, -1]),
        ("(0.0, 4.0]", [4.0, 0.1], [0.0, 4.01]),
        ("", [-7, 1e9], []),
    ],
)
def test_in_interval(interval, inside, outside):
    assert all(in_interval(v, interval) for v in inside)
    assert not any(in_interval(v, interval) for v in outside)


def test_check_int_messages():
    assert (
        check_int(np.int64(8), "data size", 8) == 8 and type(check_int(np.int64(8), "k", 8)) is int
    )
    with pytest.raises(PodiumError, match=r"^data size must be an integer >= 8, got 7$"):
        check_int(7, "data size", 8)
    with pytest.raises(PodiumError, match=r"^--k must be an integer >= 2, got True$"):
        check_int(True, "--k", 2)
    with pytest.raises(PodiumError, match=r"^width must be a positive integer, got 2.0$"):
        check_int(2.0, "width", 1, POSITIVE)
    with pytest.raises(PodiumError, match=r"^data/fold must be an integer fold index, got '1'$"):
        check_int("1", "data/fold", expected="an integer fold index")
    assert check_int(-3, "offset") == -3


def test_check_number_messages():
    assert check_number(1, "w", "> 0") == 1.0 and type(check_number(1, "w", "> 0")) is float
    with pytest.raises(PodiumError, match=r"^models\[0\]/weight must be a number > 0, got 0$"):
        check_number(0, "models[0]/weight", "> 0")
    with pytest.raises(PodiumError, match=r"^model dropout must be a number in \[0, 1\), got 1$"):
        check_number(1, "model dropout", "[0, 1)")
    with pytest.raises(PodiumError, match=r"^ensemble power must be a number > 0, got inf$"):
        check_number(math.inf, "ensemble power", "> 0", finite=True)
    with pytest.raises(PodiumError, match=r"^x must be a number, got None$"):
        check_number(None, "x")
    with pytest.raises(PodiumError, match=r"^grad_clip max must be > 0, got False$"):
        check_number(False, "grad_clip max", "> 0", "> 0")


def test_check_probability_bool_and_choice():
    assert check_probability(1, "p") == 1.0
    with pytest.raises(
        PodiumError, match=r"^--negative-threshold must be a probability in \(0, 1\], got 0$"
    ):
        check_probability(0, "--negative-threshold", "(0, 1]")
    with pytest.raises(
        PodiumError,
        match=r"^postprocess threshold must be a probability "
        r"in \[0, 1\] \(or a list of them\), got 2$",
    ):
        check_probability(2, "postprocess threshold", note=" (or a list of them)")
    assert check_bool(False, "progress") is False
    with pytest.raises(PodiumError, match=r"^outputs/masks must be true or false, got 1$"):
        check_bool(1, "outputs/masks")
    assert check_choice("mean", ["mean", "power"], "ensemble method") == "mean"
    with pytest.raises(PodiumError) as error:
        check_choice("powr", ["mean", "power"], "ensemble method")
    assert (
        str(error.value) == "ensemble method 'powr' is not supported (did "
        'you mean "power"?); expected one of: mean, power'
    )
