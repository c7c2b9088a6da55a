"""Figures of the weights: their distribution per estimator and the Eq. 4 weight curves."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Union

import torch

from soft_infonce.codesearch.plotting._figure import new_figure, save
from soft_infonce.functional import negative_weights
from soft_infonce.presets import PRESETS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CurveSpec", "plot_weight_curves", "plot_weight_distribution", "weight_curve"]

#: A weight-curve setting: a preset name (``"bm25"``, ``"simcse"``, ``"trained"``) or an
#: ``(alpha, beta, temperature)`` triple.
CurveSpec = Union[str, Sequence[float]]


def _negatives(weights: torch.Tensor, name: str) -> torch.Tensor:
    """The negative weights of ``[N, M]`` weights (the diagonal is the positive) or a 1-D tensor."""
    if not isinstance(weights, torch.Tensor):
        raise ValueError(
            f"weights_by_estimator[{name!r}] must be a torch.Tensor, got {type(weights).__name__}"
        )
    weights = weights.detach().float().cpu()
    if weights.dim() == 1:
        values = weights
    elif weights.dim() == 2 and weights.shape[1] >= weights.shape[0]:
        mask = torch.ones_like(weights, dtype=torch.bool)
        index = torch.arange(weights.shape[0])
        mask[index, index] = False  # (N, M): False at each row's positive
        values = weights[mask]
    else:
        raise ValueError(
            f"weights_by_estimator[{name!r}] must be [N, M] weights with M >= N (positives on "
            f"the diagonal) or a 1-D tensor of negative weights, got shape {tuple(weights.shape)}"
        )
    if values.numel() == 0 or not torch.isfinite(values).all():
        raise ValueError(
            f"weights_by_estimator[{name!r}] must hold at least one finite negative weight"
        )
    return values


def plot_weight_distribution(
    weights_by_estimator: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str] | None = None,
    *,
    bins: int = 40,
    title: str | None = "Estimated weights of the negatives",
) -> Figure:
    """Histogram of the negatives' Soft-InfoNCE weights per estimator (the paper's Fig. 2).

    One panel per estimator, stacked, over one shared range of weights. A bar's height is the
    fraction of that estimator's negatives in the bin (log scale: most weights sit near 1, a
    few at the clamp), so batches of different sizes compare directly. A dashed line marks
    ``w = 1``, where Soft-InfoNCE equals InfoNCE; a note in each panel gives the number of
    negatives and their mean, minimum and maximum weight.

    Args:
        weights_by_estimator: estimator name -> weights. A 2-D ``[N, M]`` tensor (e.g. from
            :func:`~soft_infonce.negative_weights`, positives on the diagonal, which are left
            out) or a 1-D tensor of negative weights only.
        path: where to write the PNG; ``None`` writes nothing.
        bins: number of histogram bins (``>= 1``).
        title: the figure's title; ``None`` for none.

    Returns:
        The figure; panel ``k`` (``figure.axes[k]``) holds estimator ``k``'s histogram as its
        first ``BarContainer`` (``axes.containers[0]``), labelled with the estimator's name.

    Examples:
        >>> from soft_infonce import negative_weights
        >>> sim = torch.rand(8, 8)
        >>> w = negative_weights(sim, alpha=1.3, beta=0.7, temperature=0.1)
        >>> fig = plot_weight_distribution({"random": w}, "weights.png")
    """
    if not isinstance(weights_by_estimator, Mapping) or not weights_by_estimator:
        raise ValueError(
            "weights_by_estimator must be a non-empty dict of name -> weights, got "
            f"{weights_by_estimator!r:.80}"
        )
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    values = {str(name): _negatives(w, str(name)) for name, w in weights_by_estimator.items()}
    low = min(float(v.min()) for v in values.values())
    high = max(float(v.max()) for v in values.values())
    if high - low < 1e-6:  # all equal (e.g. InfoNCE): give the bars some width
        low, high = low - 0.05, high + 0.05
    edges = torch.linspace(low, high, bins + 1, dtype=torch.float64).tolist()
    figure, axes_list = new_figure(len(values), 1, width=6.0, height=2.2, sharex=True, sharey=True)
    for axes, (name, v) in zip(axes_list, values.items()):
        fraction = torch.full_like(v, 1.0 / v.numel()).numpy()
        *_, bars = axes.hist(
            v.numpy(),
            bins=edges,
            weights=fraction,
            color="tab:blue",
            alpha=0.8,
            edgecolor="black",
            linewidth=0.4,
        )
        bars.set_label(name)
        axes.axvline(1.0, color="black", linestyle="--", linewidth=1.0, label="_w = 1")
        axes.set_yscale("log")
        axes.set_ylabel("fraction")
        axes.set_title(name, fontsize=9)
        axes.text(
            0.02,
            0.95,
            f"{v.numel()} negatives\nmean {float(v.mean()):.3f}\n"
            f"min {float(v.min()):.3f}\nmax {float(v.max()):.3f}",
            transform=axes.transAxes,
            va="top",
            fontsize=8,
        )
    axes_list[-1].set_xlabel("weight $w_{ij}$ of a negative (Eq. 4); dashed: w = 1 (InfoNCE)")
    if title:
        figure.suptitle(title)
    save(figure, path)
    return figure


def _curve_settings(
    presets: CurveSpec | Sequence[CurveSpec] | Mapping[str, Sequence[float]],
) -> list[tuple[str, float, float, float]]:
    """``[(label, alpha, beta, t), ...]`` from names, triples or a name -> triple mapping."""
    if isinstance(presets, str):
        presets = [presets]
    items = list(presets.items()) if isinstance(presets, Mapping) else [(None, p) for p in presets]
    if not items:
        raise ValueError("presets must name at least one setting, got an empty collection")
    settings = []
    for label, spec in items:
        if isinstance(spec, str):
            if spec not in PRESETS:
                raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {spec!r}")
            alpha, beta, t = PRESETS[spec]
            label = label or spec
        else:
            try:
                if not isinstance(spec, Iterable):  # a bare number among the settings
                    raise TypeError(spec)
                alpha, beta, t = (float(x) for x in spec)
            except (TypeError, ValueError):
                raise ValueError(
                    "presets must hold preset names or (alpha, beta, temperature) triples, "
                    f"got {spec!r}"
                ) from None
        settings.append((str(label or f"a={alpha:g}, b={beta:g}, t={t:g}"), alpha, beta, t))
    return settings


def _default_range(alpha: float, beta: float, t: float, m: int, min_weight: float) -> tuple:
    """From ``-5t`` (the plateau) to ``2t`` past the similarity where the clamp binds."""
    denominator = beta - alpha / (m - 1)
    p_clamp = (beta - min_weight * denominator) / alpha if alpha > 0 else 1.0
    if 0 < p_clamp < 1:
        knee = t * math.log(p_clamp * (m - 2) / (1 - p_clamp))
    else:  # the clamp never binds: show where p reaches 1/2
        knee = t * math.log(m - 2)
    return -5 * t, max(knee, 0.0) + 2 * t


def weight_curve(
    alpha: float,
    beta: float,
    temperature: float,
    similarity: torch.Tensor,
    batch_size: int = 32,
    min_weight: float = 0.1,
) -> torch.Tensor:
    """Weight of one negative against its similarity, the other negatives at similarity 0.

    A batch of ``batch_size`` codes per query: the positive, the negative being varied, and
    ``batch_size - 2`` negatives with similarity 0. Computed with
    :func:`~soft_infonce.negative_weights` (paper, Eq. 4), so the curve is the library's own.

    Args:
        alpha: down-weighting strength (Eq. 4).
        beta: the uniform part (Eq. 4).
        temperature: softmax temperature ``t`` of the similarity.
        similarity: 1-D similarities of the varied negative.
        batch_size: candidates per query, ``M >= 3``.
        min_weight: the lower clamp.

    Returns:
        float32 weights, one per similarity value.

    Examples:
        >>> w = weight_curve(1.3, 0.7, 0.1, torch.tensor([-1.0, 0.0, 1.0]))
        >>> [round(x, 3) for x in w.tolist()]
        [1.064, 1.0, 0.1]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 3:
        raise ValueError(
            f"batch_size must be an int >= 3 (a positive and at least two negatives), got "
            f"{batch_size!r}"
        )
    x = torch.as_tensor(similarity, dtype=torch.float32).reshape(-1)
    curve = []
    for chunk in x.split(batch_size):  # negative_weights takes at most M rows at a time
        sim = torch.zeros(chunk.numel(), batch_size)  # (rows, M): column 0 positive, 1 varied
        sim[:, 1] = chunk
        positives = torch.zeros(chunk.numel(), dtype=torch.long)
        weights = negative_weights(sim, alpha, beta, temperature, min_weight, positives)
        curve.append(weights[:, 1])
    return torch.cat(curve)


def plot_weight_curves(
    presets: CurveSpec | Sequence[CurveSpec] | Mapping[str, Sequence[float]] = (
        "bm25",
        "simcse",
        "trained",
    ),
    path: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    *,
    min_weight: float = 0.1,
    similarity: torch.Tensor | Sequence[float] | None = None,
    num_points: int = 200,
) -> Figure:
    """Weight of a negative against its estimated similarity (the paper's Fig. 3, right).

    One panel per setting, since a temperature only makes sense on its estimator's score scale
    (0.1 for cosines, 5 for dot products). In each, one negative's similarity varies while the
    other ``batch_size - 2`` negatives sit at 0 (see :func:`weight_curve`): a negative far less
    similar than the rest gets at most ``beta / (beta - alpha / (M - 1))``; a much more similar
    one falls to the clamp ``min_weight``. Dotted lines mark ``w = 1`` and the clamp.

    Args:
        presets: preset names from :data:`~soft_infonce.PRESETS`, ``(alpha, beta, t)``
            triples, or a dict label -> triple. By default the paper's three presets.
        path: where to write the PNG; ``None`` writes nothing.
        batch_size: candidates per query ``M`` (``>= 3``; ``beta - alpha / (M - 1)`` must be
            ``> 0``).
        min_weight: the lower clamp of the weights.
        similarity: the similarity values to plot at, shared by all panels; ``None`` chooses a
            range per panel around its temperature.
        num_points: points per curve when ``similarity`` is ``None``.

    Returns:
        The figure. The curve of each panel is the ``Line2D`` labelled with the setting's
        name; its data are ``(similarity, weight)``.

    Examples:
        >>> fig = plot_weight_curves(["simcse", (1.0, 1.0, 0.5)], "curves.png", batch_size=16)
    """
    settings = _curve_settings(presets)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 3:
        raise ValueError(
            f"batch_size must be an int >= 3 (a positive and at least two negatives), got "
            f"{batch_size!r}"
        )
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points must be an int >= 2, got {num_points!r}")
    figure, axes_list = new_figure(1, len(settings), width=4.0, height=3.6)
    for axes, (label, alpha, beta, t) in zip(axes_list, settings):
        if similarity is None:
            low, high = _default_range(alpha, beta, t, batch_size, min_weight)
            x = torch.linspace(low, high, num_points)
        else:
            x = torch.as_tensor(similarity, dtype=torch.float32).reshape(-1)
        w = weight_curve(alpha, beta, t, x, batch_size, min_weight)
        axes.plot(x.numpy(), w.numpy(), linewidth=2.0, label=label)
        axes.axhline(1.0, color="gray", linestyle=":", linewidth=1.0, label="_w = 1")
        axes.axhline(min_weight, color="gray", linestyle=":", linewidth=1.0, label="_clamp")
        axes.set_title(f"{label}: alpha={alpha:g}, beta={beta:g}, t={t:g}", fontsize=10)
        axes.set_xlabel(f"similarity of one negative (other {batch_size - 2} at 0)")
        axes.set_ylim(0.0, max(1.15, float(w.max()) + 0.05))
    axes_list[0].set_ylabel(f"weight $w_{{ij}}$ (Eq. 4, M = {batch_size})")
    save(figure, path)
    return figure
