"""One face for the models an index can embed with: a :class:`BiEncoder` or a
sentence-transformers model, loaded from a folder or given as an object."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = ["PROBE_TEXT", "Encoder", "load_encoder"]

Side = Literal["query", "code"]
_CHUNK = 1024  # texts embedded between progress-bar updates
#: Embedded on both sides when an index is saved and again when it is loaded: a model whose
#: embeddings of it differ is not the model that built the index.
PROBE_TEXT = (
    "def read_json(path):\n    # read a json file\n    with open(path) as f:\n"
    "        return json.load(f)"
)


class Encoder:
    """Embeds queries and code as float32 rows whose inner product ranks like the model.

    Args:
        model: A :class:`~soft_infonce.integrations.hf.modeling.BiEncoder` or a
            ``sentence_transformers.SentenceTransformer``.
        path: The folder it was loaded from (recorded in a saved index), if any.

    Attributes:
        kind: ``"bi_encoder"`` or ``"sentence_transformers"``.
        dim: The embedding width.
        scale: Reported scores are ``scale * q . c`` (the BiEncoder's own scale; 1 for a
            sentence-transformers model, whose embeddings are normalised when its similarity
            is cosine).
    """

    def __init__(self, model: Any, path: str | None = None) -> None:
        from soft_infonce.integrations.hf.modeling import BiEncoder

        self.model, self.path = model, path
        if isinstance(model, BiEncoder):
            if model.tokenizer is None:
                raise ValueError(
                    f"model must have a tokenizer to embed queries and code, got a BiEncoder "
                    f"without one{f' (loaded from {path})' if path else ''}"
                )
            self.kind = "bi_encoder"
            self.dim = int(model.embedding_dim)
            self.scale = float(model.scale)
            self.normalize = False  # the BiEncoder applies its own setting
            self.max_tokens = _max_tokens(model)
        elif hasattr(model, "encode_query") and hasattr(model, "encode_document"):
            self.kind = "sentence_transformers"
            old_name = "get_sentence_embedding_dimension"  # sentence-transformers < 6
            get_dim = getattr(model, "get_embedding_dimension", None) or getattr(model, old_name)
            self.dim = int(get_dim())
            self.scale = 1.0
            self.normalize = str(getattr(model, "similarity_fn_name", "cosine")) == "cosine"
        else:
            raise TypeError(
                "model must be a BiEncoder, a sentence_transformers.SentenceTransformer or a "
                f"path to a saved one, got {type(model).__name__}"
            )

    def encode(
        self, texts: Sequence[str], side: Side, *, batch_size: int = 64, max_length: int = 256
    ) -> np.ndarray:
        """Embed ``texts`` as a ``(len(texts), dim)`` float32 C-contiguous array."""
        texts = list(texts)
        if self.kind == "bi_encoder":
            array = self.model.encode_texts(
                texts, side=side, max_length=min(max_length, self.max_tokens),
                batch_size=batch_size,
            ).numpy()  # fmt: skip
        else:
            method = getattr(self.model, "encode_query" if side == "query" else "encode_document")
            array = method(
                texts,
                batch_size=batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
                normalize_embeddings=self.normalize,
            )
        array = np.ascontiguousarray(array, dtype=np.float32).reshape(len(texts), -1)
        if array.shape[1] != self.dim:
            raise ValueError(f"the model gave embeddings of dim {array.shape[1]}, not {self.dim}")
        return array

    def encode_many(
        self, texts: Sequence[str], side: Side, *, batch_size: int, max_length: int,
        show_progress: bool = False,
    ) -> np.ndarray:  # fmt: skip
        """:meth:`encode`, longest texts first (less padding) and ``_CHUNK`` at a time between
        the updates of a progress bar."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        result = np.empty((len(texts), self.dim), dtype=np.float32)
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="Embedding functions", unit="fn")
        try:
            for start in range(0, len(texts), _CHUNK):
                chunk = order[start : start + _CHUNK]
                result[chunk] = self.encode(
                    [texts[i] for i in chunk], side, batch_size=batch_size, max_length=max_length
                )
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return result

    def probe(self, text: str, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """The query-side and code-side embeddings of ``text``, as float64 vectors."""
        query, code = (
            self.encode([text], side, batch_size=1, max_length=max_length)[0].astype(np.float64)
            for side in ("query", "code")
        )
        return query, code

    def probe_record(self, max_length: int) -> dict[str, Any]:
        """What a saved index records of its model: :data:`PROBE_TEXT` and its embeddings."""
        query, code = self.probe(PROBE_TEXT, max_length)
        return {"text": PROBE_TEXT, "query": query.tolist(), "code": code.tolist()}


def _max_tokens(model: Any) -> int:
    """The longest input the encoder's position embeddings and tokenizer allow."""
    limit = int(getattr(model.tokenizer, "model_max_length", 0) or 0) or 10**9
    config = getattr(model.encoder, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int):
        # RoBERTa-style models start positions after the padding index.
        roberta = "roberta" in str(getattr(config, "model_type", ""))
        offset = int(getattr(config, "pad_token_id", 0) or 0) + 1 if roberta else 0
        limit = min(limit, positions - offset)
    return limit


def load_encoder(model: Any) -> Encoder:
    """An :class:`Encoder` from a model object or a saved folder.

    A folder with ``bi_encoder.json`` (or no ``modules.json``) loads as a
    :class:`~soft_infonce.integrations.hf.modeling.BiEncoder`; one with only the
    sentence-transformers layout
    (``modules.json``) loads with ``SentenceTransformer``.

    Raises:
        ValueError: the path is not an existing folder.
        TypeError: ``model`` is neither a path nor a supported model.
    """
    if isinstance(model, Encoder):
        return model
    if not isinstance(model, (str, os.PathLike)):
        return Encoder(model)
    path = os.path.abspath(os.fspath(model))
    if not os.path.isdir(path):
        raise ValueError(f"model must be an existing model folder, got {os.fspath(model)!r}")
    has = lambda name: os.path.isfile(os.path.join(path, name))  # noqa: E731
    if has("modules.json") and not has("bi_encoder.json"):
        from sentence_transformers import SentenceTransformer

        from soft_infonce.integrations.hf.modeling.integrity import read_model_folder

        read_model_folder(path, given={"pooling", "normalize"})  # every part whole
        return Encoder(SentenceTransformer(path, local_files_only=True), path)
    import soft_infonce.codesearch.graphcodebert  # noqa: F401  (registers its input layout)
    from soft_infonce.integrations.hf.modeling import BiEncoder

    return Encoder(BiEncoder.from_pretrained(path), path)
