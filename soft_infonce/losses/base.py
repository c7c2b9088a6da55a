"""The shared forward path of every contrastive loss (:class:`ContrastiveLoss`).

query/code embeddings -> scores = scale * q . c   (codes gathered across devices if asked)
                      -> similarity (given, or from the estimator on the raw texts)
                      -> loss_from_scores(scores, similarity, labels)   # the one override
                      -> + the code-to-query direction when symmetric=True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..estimators.base import WeightEstimator

__all__ = ["CITATION", "PRESETS", "ContrastiveLoss"]

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
        from ..distributed import GatheredCandidates, gather_candidates, world_size

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
        from ..distributed import gather_with_grad

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
