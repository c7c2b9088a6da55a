"""Figures of training runs: validation MRR curves, and the summary of a comparison."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from soft_infonce.codesearch.plotting._figure import new_figure, save
from soft_infonce.codesearch.plotting.weights import _negatives

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_mrr_curves", "plot_training_summary"]

_STEP_KEYS = ("step", "global_step")
_MRR_KEYS = ("eval_mrr", "mrr", "valid_mrr", "eval/mrr", "validation_mrr")


def _load_results(results: str | os.PathLike[str] | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(results, (str, os.PathLike)):
        with open(results, encoding="utf-8") as handle:
            results = json.load(handle)
    if not isinstance(results, Mapping):
        raise ValueError(
            f"results must be a dict or the path of a JSON object, got {type(results).__name__}"
        )
    return results


def _runs(results: Mapping[str, Any]) -> dict[str, Any]:
    """name -> run from ``{"runs": {...}}``, ``{"runs": [...]}``, one run, or ``{name: run}``."""
    runs = results.get("runs", None)
    if isinstance(runs, Mapping):
        return dict(runs)
    if isinstance(runs, list):
        return {
            str(r.get("name", f"run {i}")) if isinstance(r, Mapping) else f"run {i}": r
            for i, r in enumerate(runs)
        }
    if "history" in results or "log_history" in results:
        return {str(results.get("name", "run")): results}
    return {str(k): v for k, v in results.items() if isinstance(v, (Mapping, list))}


def _history_points(run: Any, metric: str | None) -> list[tuple[float, float]]:
    """``(step, mrr)`` pairs of a run's history, skipping entries without both."""
    history = run
    if isinstance(run, Mapping):
        history = run.get("history", run.get("log_history", []))
    if not isinstance(history, list):
        return []
    keys = (metric,) if metric else _MRR_KEYS
    points = []
    for entry in history:
        if not isinstance(entry, Mapping):
            continue
        step = next((entry[k] for k in _STEP_KEYS if isinstance(entry.get(k), (int, float))), None)
        value = next((entry[k] for k in keys if isinstance(entry.get(k), (int, float))), None)
        if step is not None and value is not None:
            points.append((float(step), float(value)))
    return sorted(points)


def plot_mrr_curves(
    results: str | os.PathLike[str] | Mapping[str, Any],
    path: str | os.PathLike[str] | None = None,
    *,
    metric: str | None = None,
    title: str | None = "Validation MRR during training",
) -> Figure:
    """Validation MRR against training step, one line per run.

    Reads the ``results.json`` of ``examples/run_codesearch.py``,
    ``{"runs": {name: {"history": [{"step": 100, "eval_mrr": 0.61}, ...]}}}``, and tolerates
    variants: ``"runs"`` as a list of runs with a ``"name"``, a single run ``{"history": ...}``,
    a dict name -> run without ``"runs"``, a run that is its history list, ``log_history``
    (``transformers``' own) for ``history``, ``global_step`` for ``step``, and ``mrr`` /
    ``valid_mrr`` for ``eval_mrr``. History entries without a step and an MRR (training-loss
    logs) are skipped, and so are runs with no MRR at all.

    Args:
        results: the path of the JSON file, or its content as a dict.
        path: where to write the PNG; ``None`` writes nothing.
        metric: the history key to plot; ``None`` takes the first of ``eval_mrr``, ``mrr``,
            ``valid_mrr``, ``eval/mrr``, ``validation_mrr`` that an entry has.
        title: the axes title; ``None`` for none.

    Returns:
        The figure; one ``Line2D`` per run, labelled with the run's name, data ``(step, mrr)``.

    Examples:
        >>> results = {"runs": {"infonce": {"history": [{"step": 10, "eval_mrr": 0.6},
        ...                                             {"step": 20, "eval_mrr": 0.65}]}}}
        >>> fig = plot_mrr_curves(results, "mrr.png")
    """
    runs = _runs(_load_results(results))
    curves = {name: _history_points(run, metric) for name, run in runs.items()}
    curves = {name: points for name, points in curves.items() if points}
    if not curves:
        wanted = metric or " / ".join(_MRR_KEYS)
        raise ValueError(
            f"results must hold at least one run whose history has 'step' and {wanted}, got "
            f"runs {sorted(runs)!r}"
        )
    figure, (axes,) = new_figure(1, 1)
    for name, points in curves.items():
        steps, values = zip(*points)
        axes.plot(steps, values, marker="o", markersize=3, linewidth=1.5, label=name)
    axes.set_xlabel("training step")
    axes.set_ylabel(metric or "validation MRR")
    if title:
        axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    save(figure, path)
    return figure


def plot_training_summary(
    histories: Mapping[str, Any],
    weights: Mapping[str, torch.Tensor] | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    bins: int = 50,
) -> Figure:
    """A comparison of runs in one figure: validation MRR per step (left) and the histogram
    of each run's sampled negative weights (right, log scale), as ``run_codesearch.py`` draws.

    Args:
        histories: run name -> its history (``trainer.state.log_history``, or a run dict as
            :func:`plot_mrr_curves` reads). Runs without an MRR are left out of the left panel.
        weights: run name -> negative weights (1-D, or ``[N, M]`` with the positives on the
            diagonal); ``None`` or empty leaves the right panel without bars.
        path: where to write the PNG; ``None`` writes nothing.
        bins: histogram bins (``>= 1``).

    Returns:
        The figure: ``figure.axes[0]`` holds one line per run with an MRR, ``figure.axes[1]``
        one ``BarContainer`` per run with weights.

    Examples:
        >>> history = [{"step": 10, "eval_mrr": 0.6}, {"step": 20, "eval_mrr": 0.65}]
        >>> fig = plot_training_summary({"infonce": history}, {}, "results.png")
    """
    if not isinstance(histories, Mapping):
        raise TypeError(f"histories must be a dict of name -> history, got {type(histories)}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    weights = {} if weights is None else weights
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a dict of name -> tensor, got {type(weights)}")
    figure, (left, right) = new_figure(1, 2, width=5.5, height=4.0)
    for name, history in histories.items():
        points = _history_points(history, None)
        if points:
            left.plot(*zip(*points), marker="o", markersize=3, label=str(name))
    left.set(xlabel="training step", ylabel="validation MRR", title="Validation MRR")
    if left.lines:
        left.legend()
    for name, w in weights.items():
        values = _negatives(w, str(name))
        right.hist(values.numpy(), bins=bins, alpha=0.6, label=str(name))
    right.set(
        xlabel="negative weight $w_{ij}$",
        ylabel="count",
        yscale="log",
        title="Estimated weights of in-batch negatives",
    )
    if weights:
        right.legend()
    save(figure, path)
    return figure
