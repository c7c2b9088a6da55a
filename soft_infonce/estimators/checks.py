"""Argument checks shared by the estimators: texts, and the numbers of their constructors.

Every check raises a ``ValueError`` (wrong value) or ``TypeError`` (wrong type) whose message
names the argument, the expected and the received value. This module imports torch only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "ArgumentTypeError",
    "check_bool",
    "check_int",
    "check_number",
    "check_tensor",
    "check_texts",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a ``TypeError``, and a ``ValueError`` for older callers.

    Earlier releases raised ``ValueError`` for a wrong type (``batch_size=True``); code that
    catches either keeps working.
    """


def check_texts(name: str, texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list after checking it is a non-empty list of non-blank strings."""
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


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is exactly a bool (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be a bool, got {type(value).__name__} {value!r:.60}")
    return value


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` if it is an int (not a bool, not a float) and ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(
            f"{name} must be {_int_phrase(minimum)}, got {type(value).__name__} {value!r:.60}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be {_int_phrase(minimum)}, got {value!r}")
    return value


def _int_phrase(minimum: int) -> str:
    return {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``float(value)`` if it is a finite real number (not a bool) within the given bounds.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        low: the smallest allowed value (``None``: unbounded).
        high: the largest allowed value (``None``: unbounded).
        low_open: exclude ``low`` itself.
        high_open: exclude ``high`` itself.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(
            f"{name} must be a real number, got {type(value).__name__} {value!r:.60}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        left = "-inf" if low is None else f"{low:g}"
        right = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{left}, {right}"
        interval += ")" if high_open or high is None else "]"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return value


def check_tensor(name: str, value: Any, ndim: int | None = None) -> torch.Tensor:
    """``value`` if it is a ``torch.Tensor`` (with ``ndim`` dimensions when given).

    A list or a NumPy array where a tensor is expected is a ``TypeError`` naming ``name``.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)} ({value.ndim})"
        )
    return value
