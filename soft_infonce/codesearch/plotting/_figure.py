"""The Agg figure and PNG writing shared by the plotting functions (no pyplot)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["new_figure", "save"]


def new_figure(
    nrows: int = 1, ncols: int = 1, width: float = 6.0, height: float = 4.0, **kwargs: Any
) -> tuple[Figure, list]:
    """A figure on the Agg canvas with a grid of axes, as a flat list (no pyplot involved)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "soft_infonce.codesearch.plotting needs matplotlib: install the 'plot' extra with "
            'pip install "soft-infonce[plot]" (or pip install matplotlib)'
        ) from error
    figure = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False, **kwargs)
    return figure, [ax for row in axes for ax in row]


def save(figure: Figure, path: str | os.PathLike[str] | None) -> None:
    if path is None:
        return
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(os.fspath(path), format="png", dpi=120)
