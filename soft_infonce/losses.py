"""``nn.Module`` faces of the losses in :mod:`soft_infonce.functional`.

Every loss here shares one forward path (:class:`ContrastiveLoss`)::

    query/code embeddings -> scores = scale * q . c   (codes gathered across devices if asked)
                          -> similarity (given, or from the estimator on the raw texts)
                          -> loss_from_scores(scores, similarity, labels)   # the one override
                          -> + the code-to-query direction when symmetric=True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from . import functional as SF
from .estimators.base import WeightEstimator

logger = logging.getLogger(__name__)

__all__ = [
    "BCELoss",
    "ContrastiveLoss",
    "FalseNegativeCancellationLoss",
    "InfoNCELoss",
    "KLRegularizedInfoNCELoss",
    "PRESETS",
    "SoftInfoNCELoss",
    "WeightedInfoNCELoss",
]

#: The paper's Table 7: (alpha, beta, temperature) per weight estimator.
PRESETS: dict[str, tuple[float, float, float]] = {
    "bm25": (1.5, 0.5, 1.0),
    "simcse": (1.3, 0.7, 0.1),
    "trained": (1.3, 0.7, 5.0),
}

CITATION = """@inproceedings{li-etal-2023-rethinking,
    title = "Rethinking Negative Pairs in Code Search",
    author = "Li, Haochen and Zhou, Xin and Tuan, Luu Anh and Miao, Chunyan",
    booktitle = "Proceedings of the 2023 Conference on Empirical Methods in Natural
                 Language Processing",
    year = "2023",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2023.emnlp-main.786",
}"""


def _check_embeddings(query_embeddings: torch.Tensor, code_embeddings: torch.Tensor) -> None:
    for name, x in (("query_embeddings", query_embeddings), ("code_embeddings", code_embeddings)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a 2-D tensor [batch, dim], got {shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    n, m = query_embeddings.shape[0], code_embeddings.shape[0]
    if query_embeddings.shape[1] != code_embeddings.shape[1]:
        raise ValueError(
            f"query_embeddings and code_embeddings must share the embedding size, got "
            f"{query_embeddings.shape[1]} and {code_embeddings.shape[1]}"
        )
    if m < n:
        raise ValueError(
            f"code_embeddings needs at least one code per query (the first N are the positives), "
            f"got {n} queries and {m} codes"
        )
    if m < 2:
        raise ValueError(
            "a contrastive loss needs at least one negative: a batch of one query with one code "
            "has none (use a batch size >= 2 or pass extra candidate codes)"
        )


class ContrastiveLoss(nn.Module):
    """Base of the contrastive losses: scoring, similarity, gathering and symmetry.

    A subclass overrides :meth:`loss_from_scores` (and sets ``needs_similarity``).

    Args:
        scale: multiplies the dot products (e.g. 20 for cosine scores as UniXcoder does).
        estimator: computes the similarity from raw texts when ``forward`` gets none.
        symmetric: also add the code-to-query direction and average the two.
        gather_across_devices: score local queries against the codes of all processes
            (``torch.distributed``), with gradients flowing back to every process.
    """

    needs_similarity: ClassVar[bool] = False

    def __init__(
        self,
        scale: float = 1.0,
        estimator: WeightEstimator | None = None,
        symmetric: bool = False,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if estimator is not None and not isinstance(estimator, WeightEstimator):
            raise ValueError(
                f"estimator must be a soft_infonce.WeightEstimator, got {type(estimator).__name__}"
            )
        self.scale = float(scale)
        self.estimator = estimator
        self.symmetric = bool(symmetric)
        self.gather_across_devices = bool(gather_across_devices)
        self.last_statistics: dict[str, float] = {}

    # -- the one method a subclass overrides -------------------------------------------------
    def loss_from_scores(
        self,
        scores: torch.Tensor,
        similarity: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """Loss for ``[N, M]`` scores (float32 scalar). ``similarity`` is ``None`` only when
        ``needs_similarity`` is false and none was given."""
        raise NotImplementedError

    # -- shared path ---------------------------------------------------------------------------
    def forward(
        self,
        query_embeddings: torch.Tensor,
        code_embeddings: torch.Tensor,
        similarity: torch.Tensor | None = None,
        *,
        queries: Sequence[str] | None = None,
        codes: Sequence[str] | None = None,
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            query_embeddings: ``[N, H]``.
            code_embeddings: ``[M, H]``, ``M >= N``; code ``i < N`` is query ``i``'s positive,
                codes ``N..M-1`` are extra negatives.
            similarity: raw estimator scores ``[N, M]`` (after gathering: ``[N, world * M]``);
                computed by the estimator from the texts when ``None``.
            queries: the ``N`` raw queries (for the estimator).
            codes: the ``M`` raw codes (for the estimator).
            candidate_queries: the query paired with each code (defaults to ``queries`` when
                ``M == N``), for query-query estimators.

        Returns:
            The scalar loss (float32).
        """
        _check_embeddings(query_embeddings, code_embeddings)
        n, m = query_embeddings.shape[0], code_embeddings.shape[0]
        if candidate_queries is None and queries is not None and m == n:
            candidate_queries = queries
        g = self._gather(code_embeddings, queries, codes, candidate_queries)
        all_codes, offset = g.codes, g.offset
        codes, candidate_queries = g.texts, g.candidate_queries
        labels = torch.arange(n, device=query_embeddings.device) + offset
        scores = self.scale * query_embeddings.float() @ all_codes.float().T  # (N, world * M)
        sim = self._similarity(similarity, scores.shape, queries, codes, candidate_queries)
        loss = self.loss_from_scores(scores, sim, labels)
        if not self.symmetric:
            return loss
        return 0.5 * (loss + self._code_to_query(query_embeddings, code_embeddings, sim, g))

    def _gather(self, code_embeddings, queries, codes, candidate_queries):
        from .distributed import GatheredCandidates, gather_candidates, world_size

        if not self.gather_across_devices or world_size() == 1:
            return GatheredCandidates(code_embeddings, 0, 0, codes, candidate_queries, queries)
        return gather_candidates(code_embeddings, queries, codes, candidate_queries)

    def _similarity(self, similarity, shape, queries, codes, candidate_queries):
        if similarity is not None:
            if tuple(similarity.shape) != tuple(shape):
                raise ValueError(
                    f"similarity must have the shape of the scores {tuple(shape)} (queries x "
                    f"candidates), got {tuple(similarity.shape)}"
                )
            return similarity.detach()
        if self.estimator is not None:
            if queries is None or codes is None:
                raise ValueError(
                    f"{type(self).__name__} has an estimator: pass queries= and codes= (the raw "
                    "texts of the batch) to forward, or a precomputed similarity"
                )
            return self.estimator(queries, codes, candidate_queries)
        if self.needs_similarity:
            raise ValueError(
                f"{type(self).__name__} needs a similarity matrix: pass similarity= to forward "
                "or give the loss an estimator"
            )
        return None

    def _code_to_query(self, q, c, sim, g):
        """The code-to-query direction: each paired code against all (gathered) queries."""
        from .distributed import gather_with_grad

        n = q.shape[0]
        gathered = g.gathered
        all_q = gather_with_grad(q) if gathered else q  # (world * N, H)
        scores = self.scale * c[:n].float() @ all_q.float().T  # (N, world * N)
        sim_t = None
        if sim is not None and not gathered:
            sim_t = sim[:, :n].T  # (N codes, N queries): relevance of query j to code i
        elif sim is not None and self.estimator is not None:
            local = slice(g.offset, g.offset + n)
            paired = None if g.candidate_queries is None else list(g.candidate_queries)[local]
            sim_t = self.estimator(g.queries, list(g.texts)[local], paired).T
        elif sim is not None:
            raise ValueError(
                "symmetric=True with gather_across_devices needs an estimator (a precomputed "
                "similarity covers only the query-to-code direction)"
            )
        labels = torch.arange(n, device=q.device) + g.rank * n
        if sim_t is not None:
            sim_t = sim_t.to(scores.device)
        return self.loss_from_scores(scores, sim_t, labels)

    def get_config_dict(self) -> dict[str, Any]:
        """The loss settings, for model cards and ``results.json``."""
        config: dict[str, Any] = {
            "scale": self.scale,
            "symmetric": self.symmetric,
            "gather_across_devices": self.gather_across_devices,
        }
        if self.estimator is not None:
            config["estimator"] = type(self.estimator).__name__
        return config

    @property
    def citation(self) -> str:
        """BibTeX of the paper this loss comes from."""
        return CITATION


class InfoNCELoss(ContrastiveLoss):
    """InfoNCE: cross-entropy of each query's positive against all candidates.

    ``L = -1/N sum_i log(e^{s_ii} / sum_j e^{s_ij})``. Same forward as every loss here;
    a ``similarity`` argument is ignored.

    Examples:
        >>> loss = InfoNCELoss(scale=20.0)
        >>> q, c = torch.nn.functional.normalize(torch.randn(8, 16), dim=1), torch.randn(8, 16)
        >>> loss(q, c).shape
        torch.Size([])
    """

    def loss_from_scores(self, scores, similarity, labels):
        """Cross-entropy of the positives (the similarity is not used)."""
        return SF.soft_infonce_loss(scores, None, labels)


def _weight_statistics(weights: torch.Tensor, labels: torch.Tensor, min_weight: float) -> dict:
    mask = torch.ones_like(weights, dtype=torch.bool)
    mask[torch.arange(weights.shape[0]), labels.to(weights.device)] = False
    neg = weights[mask]
    return {
        "weight_mean": neg.mean().item(),
        "weight_min": neg.min().item(),
        "weight_max": neg.max().item(),
        "weight_clamped": (neg <= min_weight + 1e-7).float().mean().item(),
    }


class SoftInfoNCELoss(ContrastiveLoss):
    """Soft-InfoNCE (Li et al., EMNLP 2023): InfoNCE with a weight on each negative.

    ``L_i = -log( e^{s_ii} / (e^{s_ii} + sum_{j != i} w_ij e^{s_ij}) )`` (Eq. 3) with
    ``w_ij = (beta - alpha p_ij) / (beta - alpha / (M - 1))`` where ``p_ij`` is the softmax of
    the estimated similarity over the negatives at temperature ``t`` (Eq. 4), clamped at
    ``min_weight``. Negatives the estimator finds relevant to the query are pushed away less.

    Args:
        alpha: down-weighting strength; ``alpha = 0`` is InfoNCE. ``None``: the estimator's
            paper preset (see :data:`PRESETS`), else 1.3.
        beta: the uniform part. ``None``: the estimator's preset, else 0.7.
        temperature: softmax temperature of the similarity. ``None``: the estimator's preset,
            else 1.0. It must suit the estimator's score scale: the paper's ``t = 5`` suits
            dot products, not cosines.
        min_weight: lower clamp of the weights, in ``(0, 1]``.
        scale: multiplies the dot products.
        estimator: a :class:`~soft_infonce.WeightEstimator`; else pass ``similarity``.
        symmetric: add the code-to-query direction.
        gather_across_devices: use the codes of all processes as negatives.

    References:
        Li, Zhou, Tuan, Miao. Rethinking Negative Pairs in Code Search. EMNLP 2023.

    Inputs:
        query_embeddings ``[N, H]``, code_embeddings ``[M, H]`` (``M >= N``), and either
        ``similarity [N, M]`` or the raw ``queries``/``codes`` for the estimator.

    Relations:
        ``InfoNCELoss`` is the case ``alpha = 0``; ``FalseNegativeCancellationLoss`` sets
        weights to 0 or 1 instead.

    Examples:
        >>> from soft_infonce import SoftInfoNCELoss
        >>> loss_fn = SoftInfoNCELoss.from_preset("simcse")
        >>> q, c, sim = torch.randn(4, 8), torch.randn(4, 8), torch.rand(4, 4)
        >>> loss = loss_fn(q, c, similarity=sim)
    """

    needs_similarity = True

    def __init__(
        self,
        alpha: float | None = None,
        beta: float | None = None,
        temperature: float | None = None,
        min_weight: float = 0.1,
        scale: float = 1.0,
        estimator: WeightEstimator | None = None,
        symmetric: bool = False,
        gather_across_devices: bool = False,
    ) -> None:
        super().__init__(scale, estimator, symmetric, gather_across_devices)
        preset = PRESETS.get(getattr(estimator, "preset", None) or "", (1.3, 0.7, 1.0))
        alpha = preset[0] if alpha is None else alpha
        beta = preset[1] if beta is None else beta
        temperature = preset[2] if temperature is None else temperature
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not 0 < min_weight <= 1:
            raise ValueError(f"min_weight must lie in (0, 1], got {min_weight!r}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.temperature, self.min_weight = float(temperature), float(min_weight)
        self._warned_flat = False

    @classmethod
    def from_preset(
        cls, name: Literal["bm25", "simcse", "trained"], **kwargs: Any
    ) -> SoftInfoNCELoss:
        """The paper's Table 7 settings: bm25 1.5/0.5/1.0, simcse 1.3/0.7/0.1,
        trained 1.3/0.7/5.0 (alpha/beta/t).

        Args:
            name: ``"bm25"``, ``"simcse"`` or ``"trained"``.
            **kwargs: other constructor arguments (they override the preset's values).

        Returns:
            The configured loss.

        Examples:
            >>> SoftInfoNCELoss.from_preset("bm25").alpha
            1.5
        """
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
        alpha, beta, t = PRESETS[name]
        return cls(**{"alpha": alpha, "beta": beta, "temperature": t, **kwargs})

    def weights(self, similarity: torch.Tensor, labels: torch.Tensor | None = None):
        """Eq. 4 weights for a similarity matrix, with this loss's settings.

        Args:
            similarity: ``[N, M]`` raw estimator scores.
            labels: positive column per row; the diagonal by default.

        Returns:
            Detached float32 weights ``[N, M]``.
        """
        return SF.negative_weights(similarity, self.alpha, self.beta, self.temperature,
                                   self.min_weight, labels)

    def loss_from_scores(self, scores, similarity, labels):
        """Eq. 3 with the Eq. 4 weights of ``similarity``; records weight statistics."""
        weights = self.weights(similarity.to(scores.device), labels)
        self.last_statistics = _weight_statistics(weights, labels, self.min_weight)
        spread = max(abs(self.last_statistics["weight_max"] - 1),
                     abs(self.last_statistics["weight_min"] - 1))
        if spread < 0.01 and not self._warned_flat:
            self._warned_flat = True
            logger.warning(
                "All Soft-InfoNCE weights lie within 1%% of 1 (min %.4f, max %.4f): the loss is "
                "InfoNCE in all but name. The temperature (t=%g) likely does not suit the "
                "estimator's score scale; try a smaller t.", self.last_statistics["weight_min"],
                self.last_statistics["weight_max"], self.temperature)
        return SF.soft_infonce_loss(scores, weights, labels)

    def get_config_dict(self) -> dict[str, Any]:
        """alpha, beta, temperature and min_weight besides the shared settings."""
        return {"alpha": self.alpha, "beta": self.beta, "temperature": self.temperature,
                "min_weight": self.min_weight, **super().get_config_dict()}


class _SimilarityLoss(ContrastiveLoss):
    """A baseline that turns the similarity into a soft target at ``temperature``."""

    needs_similarity = True

    def __init__(self, temperature: float | None = None, scale: float = 1.0,
                 estimator: WeightEstimator | None = None, symmetric: bool = False,
                 gather_across_devices: bool = False) -> None:
        super().__init__(scale, estimator, symmetric, gather_across_devices)
        if temperature is None:
            preset = getattr(estimator, "preset", None)
            temperature = PRESETS[preset][2] if preset in PRESETS else 1.0
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, **super().get_config_dict()}


class WeightedInfoNCELoss(_SimilarityLoss):
    """Weighted InfoNCE (paper, Section 6): negatives get the similarity softmax as a soft
    target, ``L_i = -log p_ii - sum_{j != i} q_ij log p_ij``. See
    :func:`soft_infonce.functional.weighted_infonce_loss`."""

    def loss_from_scores(self, scores, similarity, labels):
        """See :func:`soft_infonce.functional.weighted_infonce_loss`."""
        return SF.weighted_infonce_loss(scores, similarity, self.temperature, labels)


class BCELoss(_SimilarityLoss):
    """Binary cross-entropy with soft labels (paper, Section 6): the softmax probability of
    each candidate against label 1 (positive) or ``q_ij`` (negative). See
    :func:`soft_infonce.functional.bce_soft_label_loss`."""

    def loss_from_scores(self, scores, similarity, labels):
        """See :func:`soft_infonce.functional.bce_soft_label_loss`."""
        return SF.bce_soft_label_loss(scores, similarity, self.temperature, labels)


class KLRegularizedInfoNCELoss(_SimilarityLoss):
    """``infonce_weight * InfoNCE + kl_weight * KL(q || p_negatives)`` (paper, Section 6).

    See :func:`soft_infonce.functional.kl_regularized_infonce_loss`.

    Args:
        infonce_weight: weight of the InfoNCE term (0.7, the paper's beta).
        kl_weight: weight of the KL term (1.3, the paper's alpha).
        temperature: softmax temperature of the similarity; ``None``: the estimator's preset.
        scale: multiplies the dot products.
        estimator: computes the similarity from the raw texts.
        symmetric: add the code-to-query direction.
        gather_across_devices: use the codes of all processes as negatives.

    Examples:
        >>> q, c, sim = torch.randn(4, 8), torch.randn(4, 8), torch.rand(4, 4)
        >>> loss = KLRegularizedInfoNCELoss()(q, c, sim)
    """

    def __init__(self, infonce_weight: float = 0.7, kl_weight: float = 1.3,
                 temperature: float | None = None, scale: float = 1.0,
                 estimator: WeightEstimator | None = None, symmetric: bool = False,
                 gather_across_devices: bool = False) -> None:
        super().__init__(temperature, scale, estimator, symmetric, gather_across_devices)
        if infonce_weight < 0 or kl_weight < 0:
            raise ValueError(
                f"infonce_weight and kl_weight must be >= 0, got {infonce_weight!r}, {kl_weight!r}"
            )
        self.infonce_weight, self.kl_weight = float(infonce_weight), float(kl_weight)

    def loss_from_scores(self, scores, similarity, labels):
        """See :func:`soft_infonce.functional.kl_regularized_infonce_loss`."""
        return SF.kl_regularized_infonce_loss(scores, similarity, self.temperature,
                                              self.infonce_weight, self.kl_weight, labels)

    def get_config_dict(self) -> dict[str, Any]:
        """The two term weights besides the shared settings."""
        return {"infonce_weight": self.infonce_weight, "kl_weight": self.kl_weight,
                **super().get_config_dict()}


class FalseNegativeCancellationLoss(ContrastiveLoss):
    """InfoNCE without the suspected false negatives (paper, Section 6).

    ``mode="top_k"`` drops each query's ``k`` most similar negatives; ``mode="threshold"``
    drops negatives whose similarity reaches ``ratio`` times the positive's. Implemented as
    Soft-InfoNCE with weights 0 (dropped) or 1, i.e. ``log w = -inf``. See
    :func:`soft_infonce.functional.cancellation_weights`.

    Args:
        mode: ``"top_k"`` or ``"threshold"``.
        k: negatives dropped per query in ``top_k`` mode.
        ratio: ``threshold`` mode's fraction of the positive's similarity.
        scale: multiplies the dot products.
        estimator: computes the similarity from the raw texts.
        symmetric: add the code-to-query direction.
        gather_across_devices: use the codes of all processes as negatives.

    Examples:
        >>> loss_fn = FalseNegativeCancellationLoss(mode="top_k", k=1)
        >>> loss = loss_fn(torch.randn(4, 8), torch.randn(4, 8), torch.rand(4, 4))
    """

    needs_similarity = True

    def __init__(self, mode: Literal["top_k", "threshold"] = "top_k", k: int = 1,
                 ratio: float = 0.9, scale: float = 1.0,
                 estimator: WeightEstimator | None = None, symmetric: bool = False,
                 gather_across_devices: bool = False) -> None:
        super().__init__(scale, estimator, symmetric, gather_across_devices)
        if mode not in ("top_k", "threshold"):
            raise ValueError(f"mode must be 'top_k' or 'threshold', got {mode!r}")
        self.mode, self.k, self.ratio = mode, int(k), float(ratio)

    def loss_from_scores(self, scores, similarity, labels):
        """InfoNCE without the cancelled negatives (weight 0); records the share cancelled."""
        weights = SF.cancellation_weights(similarity, self.mode, self.k, self.ratio, labels)
        negatives = weights.numel() - weights.shape[0]
        self.last_statistics = {"cancelled": (weights == 0).sum().item() / negatives}
        return SF.soft_infonce_loss(scores, weights.to(scores.device), labels)

    def get_config_dict(self) -> dict[str, Any]:
        """mode, k and ratio besides the shared settings."""
        return {"mode": self.mode, "k": self.k, "ratio": self.ratio, **super().get_config_dict()}
