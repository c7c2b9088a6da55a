"""Scores of a frozen InfoNCE-trained bi-encoder (the paper's trained-model estimator)."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
import torch.nn.functional as F
from accelerate.utils import (  # type: ignore[import-untyped]
    extract_model_from_parallel,
)
from torch import nn

from soft_infonce.checks import check_flag, check_int, check_number
from soft_infonce.estimators.frozen import FrozenEncoderEstimator
from soft_infonce.estimators.positive_aware import PositiveAwareEstimator

if TYPE_CHECKING:  # pragma: no cover
    from soft_infonce.integrations.hf.modeling import BiEncoder

__all__ = ["SIMILARITIES", "TrainedModelEstimator", "positive_aware_guide"]

SIMILARITIES = ("dot", "cosine")


class TrainedModelEstimator(FrozenEncoderEstimator):
    """Query-code scores of a frozen copy of a bi-encoder trained with InfoNCE.

    The paper's strongest estimator: first train a bi-encoder with plain InfoNCE, then use
    its frozen query-code similarity as ``sim_ij`` to weight the negatives of a
    Soft-InfoNCE run. A model instance is deep-copied at construction, so training the
    original further never changes the estimator, and the original keeps its gradients.

    Scores are on the frozen model's own scale, ``scale * q . c`` (the ``s_ij`` it was
    trained on; ``scale`` is the model's ``scale`` attribute, 1 when it has none), so the
    paper's preset (t = 5, tuned on the trained model's own scores) applies unchanged: a
    cosine x 20 model gives ``20 * cos``. ``"dot"`` uses the embeddings as the bi-encoder
    returns them (normalised if it was built with ``normalize=True``); ``"cosine"``
    normalises them first (then also times ``scale``).

    Args:
        model: a :class:`~soft_infonce.integrations.hf.modeling.BiEncoder` (copied), or the local
            path of
            one saved with ``save_pretrained`` (loaded with ``BiEncoder.from_pretrained``).
        similarity: ``"dot"`` or ``"cosine"``; either is multiplied by the model's scale.
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
        check_int("max_query_length", max_query_length)
        check_int("max_code_length", max_code_length)
        check_int("batch_size", batch_size)
        check_flag("cache", cache)
        frozen: nn.Module
        if isinstance(model, (str, os.PathLike)):
            from soft_infonce.integrations.hf.modeling import BiEncoder

            name = os.fspath(model)
            frozen = BiEncoder.from_pretrained(name)
        elif isinstance(model, nn.Module) and callable(
            getattr(extract_model_from_parallel(model), "encode_texts", None)
        ):
            bare = extract_model_from_parallel(model)
            name = type(bare).__name__
            frozen = copy.deepcopy(bare)  # never share storage with the model being trained
        else:
            raise ValueError(
                "model must be a BiEncoder (with encode_texts) or the path of a saved one, "
                f"got {type(model).__name__}"
            )
        scale = getattr(frozen, "scale", 1.0)
        if isinstance(scale, torch.Tensor) and scale.numel() == 1:  # a learnt scale
            scale = float(scale.detach())
        self.scale = check_number(f"{name}.scale", scale, low=0.0, low_open=True)
        self.score = similarity
        self.max_query_length, self.max_code_length = max_query_length, max_code_length
        super().__init__(
            frozen,
            embedding_sides=self.embedding_sides,
            batch_size=batch_size,
            cache=cache,
            device=device,
            model_name=name,
        )

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
        model = cast("BiEncoder", self.model)  # a BiEncoder or a module with its encode_texts
        return model.encode_texts(
            texts, side=side, max_length=max_length, batch_size=self.batch_size
        )

    def similarity(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """``scale * q_i . c_j`` (or ``scale * cos``) of the frozen model, ``[N, M]``."""
        q = self.embed(queries, "query")  # (N, dim)
        c = self.embed(codes, "code")  # (M, dim)
        if self.score == "cosine":
            q, c = F.normalize(q, dim=-1), F.normalize(c, dim=-1)
        elif self.score != "dot":
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {self.score!r}")
        scores = q @ c.T  # (N, M)
        return scores if self.scale == 1.0 else scores.mul_(self.scale)


def positive_aware_guide(
    model: BiEncoder | str | os.PathLike[str],
    *,
    max_query_length: int = 128,
    max_code_length: int = 256,
    device: str | torch.device | None = None,
    similarity: Literal["dot", "cosine"] = "dot",
    max_ratio: float = 2.0,
) -> PositiveAwareEstimator:
    """A frozen guide encoder's query-code scores relative to the positive's (``"pa-guide"``).

    A :class:`~soft_infonce.estimators.PositiveAwareEstimator` (``"ratio"`` mode, hence the
    library's ``"ratio"`` preset 1.3 / 0.7 / t = 0.1) over a :class:`TrainedModelEstimator` of
    ``model``: a negative the guide scores as high as the query's own positive is taken for a
    false negative and down-weighted. The guide is usually the untrained base model being
    fine-tuned, the guide sentence-transformers' ``GISTEmbedLoss`` uses; any saved bi-encoder
    or sentence-transformers folder works. The ratio is scale-free, so the guide's score scale
    does not matter.

    Args:
        model: the guide: a BiEncoder (copied and frozen) or a local folder.
        max_query_length: token budget of a query.
        max_code_length: token budget of a code.
        device: where the frozen guide runs (default: where the model is).
        similarity: ``"dot"`` (the guide's own scores; cosine for a normalising model) or
            ``"cosine"``.
        max_ratio: the upper clip of the ratio (``>= 1``).

    Returns:
        The positive-aware estimator; its ``estimator`` is the frozen guide's.
    """
    guide = TrainedModelEstimator(
        model,
        similarity=similarity,
        max_query_length=max_query_length,
        max_code_length=max_code_length,
        device=device,
    )
    return PositiveAwareEstimator(guide, mode="ratio", max_ratio=max_ratio)
