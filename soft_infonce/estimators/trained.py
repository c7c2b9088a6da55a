"""Scores of a frozen InfoNCE-trained bi-encoder (the paper's trained-model estimator)."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.estimators.cache import pairwise_dot

if TYPE_CHECKING:  # pragma: no cover
    from soft_infonce.modeling import BiEncoder

SIMILARITIES = ("dot", "cosine")


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


class TrainedModelEstimator(WeightEstimator):
    """Query-code scores of a frozen copy of a bi-encoder trained with InfoNCE.

    The paper's strongest estimator: first train a bi-encoder with plain InfoNCE, then use
    its frozen query-code similarity as ``sim_ij`` to weight the negatives of a
    Soft-InfoNCE run. A model instance is deep-copied at construction, so training the
    original further never changes the estimator, and the original keeps its gradients.

    ``"dot"`` is ``q . c`` of the embeddings as the bi-encoder returns them (normalised if
    it was built with ``normalize=True``), without its ``scale``; ``"cosine"`` normalises
    them first. The paper's preset temperature (t = 5) was tuned on unnormalised dot
    products: with cosine scores in [-1, 1] pick a smaller t.

    Args:
        model: a :class:`~soft_infonce.modeling.BiEncoder` (copied), or the local path of
            one saved with ``save_pretrained`` (loaded with ``BiEncoder.from_pretrained``).
        similarity: ``"dot"`` or ``"cosine"``.
        max_query_length: token budget of a query.
        max_code_length: token budget of a code.
        batch_size: texts per encoder call.
        device: where the frozen copy runs (default: where the model is).
        cache: keep the embeddings of every text seen (keyed by its sha256).

    Examples:
        >>> estimator = TrainedModelEstimator("runs/infonce/final", similarity="dot")
        >>> sim = estimator(["read a file"], ["def read(p): return open(p).read()"])
    """

    preset = "trained"
    embedding_sides = ("query", "code")

    def __init__(
        self,
        model: BiEncoder | str | os.PathLike[str],
        similarity: Literal["dot", "cosine"] = "dot",
        max_query_length: int = 128,
        max_code_length: int = 256,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        cache: bool = True,
    ) -> None:
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        for name, value in (
            ("max_query_length", max_query_length),
            ("max_code_length", max_code_length),
            ("batch_size", batch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(model, (str, os.PathLike)):
            from soft_infonce.modeling import BiEncoder

            name = os.fspath(model)
            frozen = BiEncoder.from_pretrained(name)
        elif isinstance(model, nn.Module) and callable(
            getattr(_unwrap(model), "encode_texts", None)
        ):
            bare = _unwrap(model)
            name = type(bare).__name__
            frozen = copy.deepcopy(bare)  # never share storage with the model being trained
        else:
            raise ValueError(
                "model must be a BiEncoder (with encode_texts) or the path of a saved one, "
                f"got {type(model).__name__}"
            )
        self.score = similarity
        self.max_query_length, self.max_code_length = max_query_length, max_code_length
        self.batch_size, self.use_cache = batch_size, bool(cache)
        self.model_name = name
        self.model = frozen  # frozen by WeightEstimator.__setattr__
        if device is not None:
            self.to(device)

    def cache_config(self) -> dict[str, Any]:
        """The settings besides the weights that shape the embeddings."""
        get_config = getattr(self.model, "get_config_dict", None)
        return {
            "bi_encoder": get_config() if callable(get_config) else None,
            "max_query_length": self.max_query_length,
            "max_code_length": self.max_code_length,
        }

    def encode(self, texts: list[str], side: str) -> torch.Tensor:
        """Uncached embeddings ``[len(texts), dim]`` of one side, float32 on the CPU."""
        max_length = self.max_query_length if side == "query" else self.max_code_length
        return self.model.encode_texts(
            texts, side=side, max_length=max_length, batch_size=self.batch_size
        )

    def similarity(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """``q_i . c_j`` (or the cosine) of the frozen model, ``[len(queries), len(codes)]``."""
        q = self.embed(queries, "query")  # (N, dim)
        c = self.embed(codes, "code")  # (M, dim)
        if self.score == "cosine":
            q, c = F.normalize(q, dim=-1), F.normalize(c, dim=-1)
        elif self.score != "dot":
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {self.score!r}")
        return pairwise_dot(q, c)  # (N, M)
