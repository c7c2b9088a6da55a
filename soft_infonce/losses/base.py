"""The shared path of every contrastive loss (:class:`ContrastiveLoss`).

query [N, H], candidates [M, H] (positives first, then hard negatives)
  -> distributed.gather_candidates        (other processes' candidates, when asked)
  -> scores = scale * q . c                [N, world * M], float32 at least
  -> similarity (given, or the estimator on the raw texts of the same candidates)
  -> loss_from_scores(scores, similarity, labels)   # the one override
  -> + the code-to-query direction when symmetric=True

:meth:`ContrastiveLoss.compute_loss_from_embeddings` is the seam every face calls: the
module's ``forward``, the trainer, gradient caching and the sentence-transformers losses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from soft_infonce.checks import check_flag, check_number
from soft_infonce.distributed import (
    GatheredCandidates,
    gather_candidates,
    gather_with_grad,
    world_size,
)
from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.losses.checks import (
    candidate_matrix,
    check_candidates,
    check_embeddings,
    check_finite,
    texts_of,
)
from soft_infonce.losses.row_chunks import loss_in_row_chunks
from soft_infonce.presets import PRESETS

__all__ = ["CITATION", "PRESETS", "ContrastiveLoss"]

SCORES = "scores (scale * query . candidate: finite embeddings whose products overflow)"

logger = logging.getLogger(__name__)

CITATION = """@inproceedings{li-etal-2023-rethinking,
    title = "Rethinking Negative Pairs in Code Search",
    author = "Li, Haochen and Zhou, Xin and Tuan, Luu Anh and Miao, Chunyan",
    booktitle = "Proceedings of the 2023 Conference on Empirical Methods in Natural
                 Language Processing",
    year = "2023",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2023.emnlp-main.786",
}"""


class ContrastiveLoss(nn.Module):
    """Base of the contrastive losses: gathering, scoring, similarity, symmetry, statistics.

    A subclass overrides :meth:`loss_from_scores` (and sets ``needs_similarity``).

    Args:
        scale: multiplies the dot products (e.g. 20 for cosine scores as UniXcoder does).
        estimator: computes the similarity from raw texts when none is given.
        symmetric: also add the code-to-query direction and average the two.
        gather_across_devices: score local queries against the candidates of all processes
            (``torch.distributed``), with gradients flowing back to every process.
        validate: how to check the embeddings (and a given similarity) for NaN/inf.
            ``None`` (default): a device-side assert, which costs no host sync (on the CPU it
            raises ``ValueError`` at once; on an accelerator the run stops at the next
            kernel with the message); ``True``: a Python-side scan, which syncs once per
            call on an accelerator; ``False``: no check. Shapes, counts and settings are
            checked either way.

    Attributes:
        score_fn: ``(a [N, H], b [M, H]) -> [N, M]`` before ``scale``; ``None`` (default) is
            the dot product (the sentence-transformers face sets its ``similarity_fct``).
        last_statistics: detached 0-d tensors of the last call, per direction
            (``"q2c/weight_mean"``, ``"c2q/..."``); :meth:`statistics` gives numbers.
    """

    needs_similarity: ClassVar[bool] = False

    def __init__(
        self,
        scale: float = 1.0,
        estimator: WeightEstimator | None = None,
        symmetric: bool = False,
        gather_across_devices: bool = False,
        validate: bool | None = None,
    ) -> None:
        super().__init__()
        self.scale = check_number("scale", scale, low=0, low_open=True)
        if estimator is not None and not isinstance(estimator, WeightEstimator):
            raise TypeError(
                f"estimator must be a soft_infonce.WeightEstimator, got {type(estimator).__name__}"
            )
        if validate is not None:
            check_flag("validate", validate)
        self.estimator = estimator
        self.symmetric = check_flag("symmetric", symmetric)
        self.gather_across_devices = check_flag("gather_across_devices", gather_across_devices)
        self.validate = validate
        self.score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        self.last_statistics: dict[str, torch.Tensor] = {}
        self._direction = "q2c"
        self._warned_single_process = False

    # -- the one method a subclass overrides -------------------------------------------------
    def loss_from_scores(
        self,
        scores: torch.Tensor,
        similarity: torch.Tensor | None,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """Loss for ``[N, M]`` scores (a scalar, float32 at least). ``similarity`` is ``None``
        only when ``needs_similarity`` is false and none was given. Record statistics with
        :meth:`record`."""
        raise NotImplementedError

    def record(self, statistics: Mapping[str, torch.Tensor]) -> None:
        """Keep detached statistics of the current direction (no host sync)."""
        for key, value in statistics.items():
            self.last_statistics[f"{self._direction}/{key}"] = value.detach()

    def statistics(self) -> dict[str, float]:
        """The last call's statistics as numbers (one host sync), after :meth:`check_statistics`."""
        numbers = {key: float(value) for key, value in self.last_statistics.items()}
        self.check_statistics(numbers)
        return numbers

    def check_statistics(self, statistics: Mapping[str, float]) -> None:
        """Warn about statistics once they are numbers (the logging path, not every step)."""

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
        """Compute the loss (see :meth:`compute_loss_from_embeddings`).

        Args:
            query_embeddings: ``[N, H]``.
            code_embeddings: ``[M, H]``, ``M >= N``; code ``i < N`` is query ``i``'s positive,
                codes ``N..M-1`` are extra candidates (hard negatives).
            similarity: raw estimator scores ``[N, M]`` (after gathering: ``[N, world * M]``);
                computed by the estimator from the texts when ``None``.
            queries: the ``N`` raw queries (for the estimator).
            codes: the ``M`` raw codes (for the estimator).
            candidate_queries: the query paired with each code (defaults to ``queries`` when
                ``M == N``), for query-query estimators.

        Returns:
            The scalar loss (float32, or float64 for float64 embeddings).
        """
        # the same checks the seam makes, with the names of this signature
        queries_checked = check_embeddings("query_embeddings", query_embeddings)
        check_candidates(queries_checked, code_embeddings, "code_embeddings")
        texts = {"queries": queries, "codes": codes, "candidate_queries": candidate_queries}
        return self.compute_loss_from_embeddings(
            query_embeddings, code_embeddings, texts, similarity
        )

    def compute_loss_from_embeddings(
        self,
        query_embeddings: torch.Tensor,
        candidate_embeddings: torch.Tensor | Sequence[torch.Tensor],
        texts: Mapping[str, Sequence[str] | None] | None = None,
        similarity: torch.Tensor | None = None,
        *,
        rows_per_chunk: int | None = None,
    ) -> torch.Tensor:
        """The loss from embeddings: the seam shared by every face of the library.

        Args:
            query_embeddings: ``[N, H]``.
            candidate_embeddings: ``[M, H]`` (the first ``N`` are the positives, then extra
                candidates such as hard negatives), or columns ``[N, H]`` (positive,
                negative_1, ..., concatenated column-major into ``M = N (1 + k)``).
            texts: raw ``queries`` (N), ``codes`` (M) and ``candidate_queries`` (M, the query
                paired with each candidate) for the estimator; a collator batch works as is.
            similarity: precomputed ``[N, world * M]`` estimator scores, else the estimator's.
            rows_per_chunk: score and back-propagate this many queries at a time (gradient
                caching's loss step; memory ``[rows_per_chunk, M]``, :mod:`.row_chunks`); the
                returned loss is then detached. Not with ``symmetric=True``.

        Returns:
            The scalar loss.
        """
        q = check_embeddings("query_embeddings", query_embeddings)
        c = check_candidates(q, candidate_matrix(candidate_embeddings, q.shape[0]))
        n, m = q.shape[0], c.shape[0]
        if similarity is not None and not isinstance(similarity, torch.Tensor):
            raise TypeError(f"similarity must be a torch.Tensor, got {type(similarity).__name__}")
        if self.validate is not False:
            for name, x in (
                ("query_embeddings", q),
                ("candidate_embeddings", c),
                ("similarity", similarity),
            ):
                if x is not None:
                    check_finite(name, x, sync=bool(self.validate))
        queries, codes, candidate_queries = texts_of(texts, n, m)
        if candidate_queries is None and queries is not None and m == n:
            candidate_queries = queries
        if self.gather_across_devices:
            if world_size() == 1 and not getattr(self, "_warned_single_process", False):
                self._warned_single_process = True  # a Python check: no sync, once
                logger.warning(
                    "%s(gather_across_devices=True) runs in a single process (no initialised "
                    "torch.distributed process group): there is nothing to gather and each "
                    "query sees only its own batch's candidates. Launch several processes "
                    "(docs/distributed.md) or set gather_across_devices=False.",
                    type(self).__name__,
                )
            g = gather_candidates(c, queries, codes, candidate_queries)
        else:
            g = GatheredCandidates.local(c, queries, codes, candidate_queries)
        dtype = torch.promote_types(torch.promote_types(q.dtype, c.dtype), torch.float32)
        labels = torch.arange(n, device=q.device) + g.offset
        if rows_per_chunk is not None:
            return loss_in_row_chunks(self, q, g, dtype, labels, similarity, rows_per_chunk)
        scores = self._scores(q.to(dtype), g.embeddings.to(dtype))  # (N, world * M)
        sim = self._similarity(similarity, scores, g)
        self.last_statistics = {}
        self._direction = "q2c"
        loss = self.loss_from_scores(scores, sim, labels)
        if not self.symmetric:
            return loss
        self._direction = "c2q"
        try:
            return 0.5 * (loss + self._code_to_query(q, c, dtype, sim, g))
        finally:
            self._direction = "q2c"

    def _scores(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raw = a @ b.T if self.score_fn is None else self.score_fn(a, b)
        scores = self.scale * raw
        if self.validate is not False:  # finite embeddings can still overflow in their products
            check_finite(SCORES, scores, sync=bool(self.validate))
        return scores

    def _similarity(self, similarity, scores, g: GatheredCandidates) -> torch.Tensor | None:
        shape = scores.shape
        if similarity is not None:
            if tuple(similarity.shape) != tuple(shape):
                raise ValueError(
                    f"similarity must have the shape of the scores {tuple(shape)} (queries x "
                    f"candidates), got {tuple(similarity.shape)}"
                )
            return similarity.detach()
        estimator = self.estimator
        if estimator is not None and estimator.uses_scores:  # e.g. SelfGuidedEstimator
            return estimator.similarity_from_scores(scores.detach())
        if estimator is not None:
            if g.query_texts is None or g.code_texts is None:
                raise ValueError(
                    f"{type(self).__name__} has an estimator: pass queries= and codes= (the raw "
                    "texts of the batch) to forward, or a precomputed similarity"
                )
            n = shape[0]
            queries = g.query_texts[g.rank * n : (g.rank + 1) * n]  # this process's queries
            return estimator(queries, g.code_texts, g.candidate_query_texts)
        if self.needs_similarity:
            raise ValueError(
                f"{type(self).__name__} needs a similarity matrix: pass similarity= to forward "
                "or give the loss an estimator"
            )
        return None

    def _code_to_query(self, q, c, dtype, sim, g: GatheredCandidates) -> torch.Tensor:
        """The code-to-query direction: each paired code against all (gathered) queries."""
        n = q.shape[0]
        all_q = gather_with_grad(q) if g.gathered else q  # (world * N, H)
        scores = self._scores(c[:n].to(dtype), all_q.to(dtype))  # (N, world * N)
        sim_t = None
        estimator = self.estimator
        if sim is not None and not g.gathered:
            sim_t = sim[:, :n].T  # (N codes, N queries): relevance of query j to code i
        elif sim is not None and estimator is not None and estimator.uses_scores:
            sim_t = estimator.similarity_from_scores(scores.detach())
        elif sim is not None and estimator is not None:
            if g.query_texts is None or g.code_texts is None:
                raise ValueError(
                    "symmetric=True with gather_across_devices scores the code-to-query "
                    "direction with the estimator: pass queries= and codes= (the raw texts)"
                )
            local = slice(g.offset, g.offset + n)
            paired = None if g.candidate_query_texts is None else g.candidate_query_texts[local]
            sim_t = estimator(g.query_texts, g.code_texts[local], paired).T
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
