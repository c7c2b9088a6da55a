"""Argument checks for every layer: numbers, ints, flags, tensors and texts, name first.

Each check names the argument, what was expected and what came. A value of the wrong kind (a
bool or a string where a number is expected, a list where a tensor is) raises
:class:`ArgumentTypeError`, which is a ``TypeError`` and a ``ValueError`` both, so a caller may
catch either; a value of the right kind out of range (NaN, infinite, negative, a blank text, a
shape that does not match) raises ``ValueError``. This module imports torch only.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Literal, cast, overload

import torch

__all__ = [
    "ArgumentTypeError",
    "check_flag",
    "check_int",
    "check_number",
    "check_same_shape",
    "check_tensor",
    "check_texts",
    "is_blank",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a ``TypeError`` and, like every bad argument, a
    ``ValueError``."""


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"{'<' if high_open else '<='} {high:g}"


@overload
def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = ...,
    high: float | None = ...,
    low_open: bool = ...,
    high_open: bool = ...,
    integer: Literal[False] = ...,
) -> float: ...


@overload
def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = ...,
    high: float | None = ...,
    low_open: bool = ...,
    high_open: bool = ...,
    integer: Literal[True],
) -> int: ...


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float:
    """A finite real number in ``[low, high]`` (ends open when asked), returned as a float.

    Args:
        name: The argument's name, for the message.
        value: The value to check; a bool is not a number here, nor is a 0-d tensor.
        low: The smallest allowed value (``None``: no bound).
        high: The largest allowed value (``None``: no bound).
        low_open: ``low`` itself is excluded.
        high_open: ``high`` itself is excluded.
        integer: An ``int`` is required (``1.9`` is not silently ``1``); returned as an int.

    Returns:
        The value as a Python float (an int for ``integer=True``).

    Raises:
        ArgumentTypeError: Not a real number (or not an int when ``integer``).
        ValueError: NaN, infinite or out of range.

    Examples:
        >>> check_number("beta", 0.7, low=0, low_open=True)
        0.7
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an int" if integer else "a real number"
        raise ArgumentTypeError(
            f"{name} must be {expected}, got {type(value).__name__} {value!r:.60}"
        )
    number = cast(float, value)  # every numbers.Real compares with a float
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be {_bounds(low, high, low_open, high_open)}, got {value!r}")
    return int(number) if integer else float(number)


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` if it is an int (not a bool, not a float) and ``>= minimum``."""
    phrase = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(
            f"{name} must be {phrase}, got {type(value).__name__} {value!r:.60}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be {phrase}, got {value!r}")
    return int(value)


def check_flag(name: str, value: Any) -> bool:
    """``value`` if it is exactly a bool (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be a bool, got {type(value).__name__} {value!r:.60}")
    return value


def check_tensor(name: str, value: Any, *, ndim: int | None = None) -> torch.Tensor:
    """``value`` if it is a ``torch.Tensor`` (with ``ndim`` dimensions when given)."""
    if not isinstance(value, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)} ({value.ndim})"
        )
    return value


def check_same_shape(
    name: str, value: torch.Tensor, reference_name: str, reference: torch.Tensor
) -> None:
    """``ValueError`` unless ``value`` has the shape of ``reference``, naming both arguments."""
    if tuple(value.shape) != tuple(reference.shape):
        raise ValueError(
            f"{name} must have the shape of {reference_name} {tuple(reference.shape)}, got "
            f"{tuple(value.shape)}"
        )


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing but whitespace."""
    return not text.strip()


def check_texts(name: str, texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, after checking it is a non-empty sequence of non-blank strings."""
    if isinstance(texts, (str, bytes)):
        raise ValueError(
            f"{name} must be a sequence of strings, got a single {type(texts).__name__}"
            f" {texts[:40]!r}"
        )
    try:
        texts = list(texts)
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of strings, got {type(texts).__name__}"
        ) from None
    if not texts:
        raise ValueError(f"{name} must hold at least one text, got an empty {name}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{i}] must be a str, got {type(text).__name__}: {text!r:.60}")
        if not text or text.isspace():
            raise ValueError(f"{name}[{i}] must be a non-blank text, got {text!r}")
    return texts
