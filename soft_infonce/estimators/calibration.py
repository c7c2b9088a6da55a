"""Pick Eq. 4's temperature for an estimator from data instead of the paper's fixed t."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from soft_infonce.checks import check_int, check_number
from soft_infonce.estimators.base import WeightEstimator

__all__ = ["calibrate_temperature", "negative_entropy"]


def negative_entropy(similarity: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-row entropy (nats) of Eq. 4's softmax of ``similarity / t`` over the negatives.

    Column ``i`` is row ``i``'s positive and is left out; the result has shape ``[N]`` and
    lies in ``[0, ln(M - 1)]`` (``ln(M - 1)``: uniform, every negative alike).
    """
    n, m = similarity.shape
    rows = torch.arange(n)
    logits = similarity.double() / temperature  # (N, M)
    logits[rows, rows] = -math.inf
    log_p = torch.log_softmax(logits, dim=1)
    log_p[rows, rows] = 0.0  # p = 0 there: contributes 0 * 0
    return -(log_p.exp() * log_p).sum(dim=1)  # (N,)


def _scores(estimator: WeightEstimator | None, batch: Any, index: int) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        if batch.ndim != 2 or batch.shape[1] < 2 or batch.shape[1] < batch.shape[0]:
            raise ValueError(
                f"batches[{index}] must be a [N, M] score matrix with M >= max(N, 2), "
                f"got shape {tuple(batch.shape)}"
            )
        if estimator is not None and getattr(estimator, "uses_scores", False):
            batch = estimator.similarity_from_scores(batch)
        scores = batch.detach()
    elif isinstance(batch, Mapping):
        if estimator is None:
            raise ValueError(
                f"batches[{index}] holds texts, so an estimator is needed to score them, got None"
            )
        for key in ("queries", "codes"):
            if key not in batch:
                raise ValueError(f"batches[{index}] must hold {key!r} (a list of texts)")
        scores = estimator(batch["queries"], batch["codes"], batch.get("candidate_queries"))
        if scores.shape[1] < 2:
            raise ValueError(f"batches[{index}] must hold at least 2 codes, got 1")
    else:
        raise TypeError(
            f"batches[{index}] must be a mapping with 'queries' and 'codes' (a collator batch) "
            f"or a [N, M] torch.Tensor of scores, got {type(batch).__name__}"
        )
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"batches[{index}] scores must be finite")
    return scores


def calibrate_temperature(
    estimator: WeightEstimator | None,
    batches: Iterable[Mapping[str, Sequence[str]] | torch.Tensor],
    *,
    target_entropy: float | None = None,
    effective_negatives: float | None = None,
    max_iterations: int = 200,
) -> float:
    """The temperature ``t`` at which Eq. 4's softmax over negatives has a stated spread.

    The paper fixes ``t`` per estimator, but ``t`` only means something with its score scale
    (t = 5 on cosines leaves every weight at 1). This picks ``t`` from a sample of batches so
    that the softmax of ``sim / t`` over each row's ``M - 1`` negatives has, averaged over
    all rows, the entropy ``target_entropy`` (nats), or equivalently the effective number of
    negatives ``exp(mean entropy) = effective_negatives``: ``M - 1`` means uniform weights
    (InfoNCE), 1 means one negative takes all the mass. The mean entropy grows with ``t``, so
    a bisection on ``log t`` finds it.

    Cost: one estimator call per batch (a lookup for a warm cached estimator), then about
    50-100 softmaxes over the collected ``[N, M]`` matrices; no gradient, no model.

    Args:
        estimator: scores the text batches; ``None`` when every batch is a score matrix.
        batches: collator batches (mappings with ``queries``, ``codes`` and optionally
            ``candidate_queries``; column i is query i's positive) or ``[N, M]`` score
            matrices (for a score-based estimator such as ``SelfGuidedEstimator``).
        target_entropy: the mean entropy wanted, in ``(0, mean ln(M - 1))``.
        effective_negatives: ``exp`` of it, in ``(1, M - 1)``; give exactly one of the two.
        max_iterations: bisection steps (each halves the bracket of ``log t``).

    Returns:
        ``t`` (a Python float), to pass as ``temperature=`` to the loss.

    Raises:
        ValueError: no or both targets, a target out of range or unreachable (all scores
            equal), an empty ``batches``, a batch of one candidate.
        TypeError: a batch that is neither a mapping nor a tensor.

    Examples:
        >>> sim = torch.tensor([[5.0, 1.0, 0.0, 0.0], [0.0, 5.0, 2.0, 0.0]])
        >>> t = calibrate_temperature(None, [sim], effective_negatives=2.0)
        >>> round(float(negative_entropy(sim, t).mean().exp()), 4)
        2.0
    """
    if (target_entropy is None) == (effective_negatives is None):
        raise ValueError(
            "give exactly one of target_entropy and effective_negatives, got "
            f"target_entropy={target_entropy!r}, effective_negatives={effective_negatives!r}"
        )
    if effective_negatives is not None:
        name = "effective_negatives"
        target = math.log(check_number(name, effective_negatives, low=1.0, low_open=True))
    else:
        name = "target_entropy"
        target = check_number(name, target_entropy, low=0.0, low_open=True)
    check_int("max_iterations", max_iterations)
    matrices = [_scores(estimator, batch, i) for i, batch in enumerate(batches)]
    if not matrices:
        raise ValueError("batches must hold at least one batch, got none")
    ceiling = sum(math.log(m.shape[1] - 1) * m.shape[0] for m in matrices)
    ceiling /= sum(m.shape[0] for m in matrices)
    if target >= ceiling:
        raise ValueError(
            f"{name} must be below the uniform softmax's (mean ln(M - 1) = {ceiling:.4g} nats, "
            f"{math.exp(ceiling):.4g} negatives), got {target:.4g} nats"
        )

    def mean_entropy(log_t: float) -> float:
        total = sum(float(negative_entropy(m, math.exp(log_t)).sum()) for m in matrices)
        return total / sum(m.shape[0] for m in matrices)

    spread = max(float(m.max() - m.min()) for m in matrices)
    if spread == 0:
        raise ValueError("every score is equal: no temperature changes the softmax")
    low, high = math.log(spread) - 20.0, math.log(spread) + 20.0  # e^20 ~ 5e8 either way
    if mean_entropy(low) > target:
        raise ValueError(
            f"{name} {target:.4g} nats is below what any temperature reaches "
            f"({mean_entropy(low):.4g} nats: ties among the top negatives)"
        )
    for _ in range(max_iterations):
        middle = (low + high) / 2
        if mean_entropy(middle) < target:
            low = middle
        else:
            high = middle
        if high - low < 1e-9:
            break
    return math.exp((low + high) / 2)
