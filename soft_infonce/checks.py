"""Argument checks shared by the functional API: exact types, finite numbers, named arguments.

Every check raises ``TypeError`` when the kind of value is wrong (a list where a tensor is
expected, a bool or a string where a number is) and ``ValueError`` when the value is of the
right kind but out of range (NaN, infinite, negative, a shape that does not match). Each
message names the argument, what was expected and what came.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal, cast, overload

import torch

__all__ = ["check_number", "check_same_shape", "check_tensor"]


def check_tensor(value: Any, name: str) -> torch.Tensor:
    """``value`` itself if it is a ``torch.Tensor``, else ``TypeError`` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


@overload
def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = ...,
    high: float | None = ...,
    low_open: bool = ...,
    high_open: bool = ...,
    integer: Literal[False] = ...,
) -> float: ...


@overload
def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = ...,
    high: float | None = ...,
    low_open: bool = ...,
    high_open: bool = ...,
    integer: Literal[True],
) -> int: ...


@overload
def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = ...,
    high: float | None = ...,
    low_open: bool = ...,
    high_open: bool = ...,
    integer: bool,
) -> float: ...


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float:
    """A finite real number in ``[low, high]`` (ends open when asked), returned as a float.

    Args:
        value: the value to check; a bool is not a number here, a 0-d tensor is not either.
        name: the argument name used in the message.
        low: smallest allowed value (``None``: no bound).
        high: largest allowed value (``None``: no bound).
        low_open: ``low`` itself is excluded.
        high_open: ``high`` itself is excluded.
        integer: an ``int`` is required (``1.9`` is not silently ``1``).

    Returns:
        The value as a Python float (an int for ``integer=True``).

    Raises:
        TypeError: not a real number (or not an int when ``integer``).
        ValueError: NaN, infinite or out of range.
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an int" if integer else "a real number"
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r:.60}")
    # typeshed's numbers.Real declares no comparisons with float; every Real compares with one
    value = cast(float, value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name} must be in {bounds}, got {value!r}")
    return int(value) if integer else float(value)


def check_same_shape(
    value: torch.Tensor, name: str, reference: torch.Tensor, ref_name: str
) -> None:
    """``ValueError`` unless ``value`` has the shape of ``reference``, naming both arguments."""
    if tuple(value.shape) != tuple(reference.shape):
        raise ValueError(
            f"{name} must have the shape of {ref_name} {tuple(reference.shape)}, got "
            f"{tuple(value.shape)}"
        )


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing but whitespace."""
    return not text.strip()
