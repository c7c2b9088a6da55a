"""The paper's hyper-parameter presets and their resolution: the one place that fills them.

Li et al. (EMNLP 2023, Table 7) tuned ``(alpha, beta, t)`` per weight estimator. A preset's
temperature only means something on the score scale it was tuned on, so every estimator
returns scores on that scale (BM25 scores, SimCSE cosines, the trained model's own
``scale * q . c``) and names its preset in ``estimator.preset``. Every face of the loss
(:class:`~soft_infonce.SoftInfoNCELoss`, the baselines, the sentence-transformers losses and
the trainer's ``build_loss``) fills unset settings through :func:`resolve`, so the three ways
of building a loss give the same numbers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from soft_infonce.checks import check_number

__all__ = [
    "DEFAULT",
    "LIBRARY_PRESETS",
    "PRESETS",
    "Settings",
    "check_number",
    "preset_of",
    "resolve",
]

#: The paper's Table 7: (alpha, beta, temperature) per weight estimator.
PRESETS: dict[str, tuple[float, float, float]] = {
    "bm25": (1.5, 0.5, 1.0),
    "simcse": (1.3, 0.7, 0.1),
    "trained": (1.3, 0.7, 5.0),
}

#: Presets of this library's estimators beyond the paper (not tuned by the paper). ``ratio``:
#: scores relative to the positive's, in [0, 2] (``PositiveAwareEstimator``'s default mode):
#: SimCSE's alpha / beta and a cosine-like t, the setting ``benchmarks/hard_negatives.py``
#: measured.
LIBRARY_PRESETS: dict[str, tuple[float, float, float]] = {
    "ratio": (1.3, 0.7, 0.1),
}
_ALL = {**PRESETS, **LIBRARY_PRESETS}

#: The settings of an estimator without a preset (or of no estimator).
DEFAULT: tuple[float, float, float] = (1.3, 0.7, 1.0)


class Settings(NamedTuple):
    """Resolved Soft-InfoNCE settings."""

    alpha: float
    beta: float
    temperature: float


def preset_of(estimator: Any) -> str | None:
    """The preset named by ``estimator.preset`` (``None`` without estimator or preset)."""
    name = getattr(estimator, "preset", None)
    if name is not None and name not in _ALL:
        raise ValueError(
            f"{type(estimator).__name__}.preset must be one of {sorted(_ALL)} or None, got {name!r}"
        )
    return name


def resolve(
    estimator: Any = None,
    alpha: float | None = None,
    beta: float | None = None,
    temperature: float | None = None,
    *,
    preset: str | None = None,
) -> Settings:
    """Fill the unset settings from the estimator's preset (or ``preset``), then check them.

    Args:
        estimator: a :class:`~soft_infonce.WeightEstimator` (its ``preset``), or ``None``.
        alpha: down-weighting strength; ``None``: the preset's.
        beta: the uniform part; ``None``: the preset's.
        temperature: softmax temperature of the similarity; ``None``: the preset's.
        preset: a preset name that wins over the estimator's.

    Returns:
        ``Settings(alpha, beta, temperature)`` as checked floats (alpha >= 0, beta > 0, t > 0).

    Examples:
        >>> resolve(None, alpha=1.1, preset="bm25")
        Settings(alpha=1.1, beta=0.5, temperature=1.0)
    """
    if preset is not None and preset not in _ALL:
        raise ValueError(f"preset must be one of {sorted(_ALL)}, got {preset!r}")
    name = preset if preset is not None else preset_of(estimator)
    defaults = _ALL[name] if name is not None else DEFAULT
    return Settings(
        check_number("alpha", defaults[0] if alpha is None else alpha, low=0),
        check_number("beta", defaults[1] if beta is None else beta, low=0, low_open=True),
        check_number(
            "temperature",
            defaults[2] if temperature is None else temperature,
            low=0,
            low_open=True,
        ),
    )
