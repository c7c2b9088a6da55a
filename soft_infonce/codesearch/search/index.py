"""A FAISS index of a code base's functions, searched with natural-language queries.

Over 300 lines for one reason: :class:`CodeIndex` is the public class of code search and
most of the file is its docstrings; the FAISS indexes, the hits, the encoders and the files
live in their own modules (``_faiss``, ``hits``, ``encoders``, ``storage`` + ``manifest``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from soft_infonce.codesearch.data.files import Skipped
from soft_infonce.codesearch.search._faiss import INDEX_TYPES, new_faiss_index
from soft_infonce.codesearch.search.encoders import Encoder, load_encoder
from soft_infonce.codesearch.search.extract import CodeUnit, iter_code_units
from soft_infonce.codesearch.search.hits import HIT_FIELDS, SearchHit, record_problem

__all__ = ["CodeIndex", "SearchHit"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class CodeIndex:
    """An index of code embeddings with each entry's path, line, name and language.

    Args:
        model: A :class:`~soft_infonce.integrations.hf.modeling.BiEncoder`, a sentence-transformers
            model or
            the folder of a saved one; ``None`` for an index fed only with
            :meth:`add_embeddings` and :meth:`search_embeddings`.
        index_type: ``"flat"``: exact inner product (the default); ``"hnsw"``: an approximate
            HNSW graph; ``"ivf"``: approximate inverted lists, trained on the first vectors
            added and much faster to build than HNSW. See ``docs/search.md`` for their speed
            and recall; use an approximate index for hundreds of thousands of functions.
        dim: The embedding width, when there is no model.
        hnsw_m: Neighbours per HNSW node (memory ~ ``4 * (dim + 2 * hnsw_m)`` bytes a vector).
        ef_construction: HNSW build beam width (larger: better graph, slower build).
        ef_search: HNSW search beam width (larger: higher recall, slower queries).
        nlist: IVF lists; default ``sqrt(n)`` of the first add (at most ``n / 39``).
        nprobe: IVF lists scanned per query (larger: higher recall, slower queries).
        max_length: Token budget of an embedded code or query.
        batch_size: Texts per forward pass.
        show_progress: A progress bar while embedding code.

    Examples:
        >>> index = CodeIndex("my-model/")  # doctest: +SKIP
        >>> index.add_paths("src/")  # doctest: +SKIP
        >>> for hit in index.search("read a json file", k=5):  # doctest: +SKIP
        ...     print(hit.location, hit.name, hit.score)
        >>> index.save("my-index/")  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any = None,
        *,
        index_type: Literal["flat", "hnsw"] = "flat",
        dim: int | None = None,
        hnsw_m: int = 16,
        ef_construction: int = 40,
        ef_search: int = 64,
        nlist: int | None = None,
        nprobe: int = 16,
        max_length: int = 256,
        batch_size: int = 64,
        show_progress: bool = True,
    ) -> None:
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
        for name, value in (("hnsw_m", hnsw_m), ("ef_construction", ef_construction),
                            ("ef_search", ef_search), ("nprobe", nprobe),
                            ("max_length", max_length),
                            ("batch_size", batch_size)):  # fmt: skip
            _positive_int(name, value)
        self.encoder: Encoder | None = load_encoder(model) if model is not None else None
        if dim is not None:
            _positive_int("dim", dim)
            if self.encoder is not None and dim != self.encoder.dim:
                raise ValueError(f"dim must match the model's {self.encoder.dim}, got {dim}")
        self.dim = self.encoder.dim if self.encoder is not None else dim
        self.index_type = index_type
        if nlist is not None:
            _positive_int("nlist", nlist)
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.nlist, self.nprobe = nlist, nprobe
        self.max_length, self.batch_size, self.show_progress = max_length, batch_size, show_progress
        self.model_path = self.encoder.path if self.encoder is not None else None
        self.scale = self.encoder.scale if self.encoder is not None else 1.0
        self.records: list[dict[str, Any]] = []
        self.skipped = Skipped()
        self.model_probe: dict[str, Any] | None = None  # the model's probe embeddings
        self.model_mismatch = False  # loaded with another model than the one that built it
        self._index: Any = None

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return (
            f"CodeIndex({len(self)} entries, dim={self.dim}, index_type={self.index_type!r}, "
            f"model={self.model_path!r})"
        )

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Trade recall for speed at query time: HNSW ``ef_search``, IVF ``nprobe``."""
        if ef_search is not None:
            self.ef_search = _positive_int("ef_search", ef_search)
        if nprobe is not None:
            self.nprobe = _positive_int("nprobe", nprobe)
        if self._index is not None and self.index_type == "hnsw":
            self._index.hnsw.efSearch = self.ef_search
        elif self._index is not None and self.index_type == "ivf":
            self._index.nprobe = self.nprobe

    # ------------------------------------------------------------------ building
    def _new_index(self, first: np.ndarray) -> Any:
        if self.index_type == "ivf" and self.nlist is None:
            self.nlist = max(1, min(int(len(first) ** 0.5), len(first) // 39))
        return new_faiss_index(
            self.index_type, first, hnsw_m=self.hnsw_m, ef_construction=self.ef_construction,
            nlist=self.nlist,
        )  # fmt: skip

    def add_embeddings(
        self, embeddings: Any, records: Sequence[dict[str, Any]] | None = None
    ) -> int:
        """Add precomputed code embeddings ``(n, dim)`` with one metadata dict each.

        Returns:
            The number added.
        """
        array = np.ascontiguousarray(embeddings, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] == 0:
            raise ValueError(f"embeddings must be a non-empty (n, dim) array, got {array.shape}")
        if self.dim is not None and array.shape[1] != self.dim:
            raise ValueError(
                f"embeddings must have the index's dim {self.dim}, got dim {array.shape[1]} "
                "(was the index built with another model?)"
            )
        if records is not None and len(records) != len(array):
            raise ValueError(f"records must hold {len(array)} dicts, got {len(records)}")
        if not np.isfinite(array).all():
            raise ValueError("embeddings must be finite, got NaN or inf")
        kept: list[Any] = [{} for _ in range(len(array))]
        if records is not None:  # fields a hit does not show are dropped
            kept = [
                {k: v for k, v in r.items() if k in HIT_FIELDS} if isinstance(r, dict) else r
                for r in records
            ]
            for i, record in enumerate(kept):
                problem = record_problem(record)
                if problem is not None:
                    raise ValueError(f"records[{i}]: {problem}")
        self.dim = array.shape[1]
        if self._index is None:
            self._index = self._new_index(array)
            self.set_search_params()
        self._index.add(array)
        self.records.extend(kept)
        return len(array)

    def _require_entries(self) -> None:
        if self._index is None or len(self) == 0:
            raise ValueError(
                "the index is empty: add code (add_paths / add_texts) or load a saved index "
                "before searching"
            )

    def _require_encoder(self) -> Encoder:
        if self.encoder is None:
            raise ValueError(
                "this index has no model: pass model= (or --model) to embed texts and queries"
            )
        return self.encoder

    def _embed_codes(self, texts: Sequence[str]) -> np.ndarray:
        encoder = self._require_encoder()
        if self.model_mismatch:
            raise ValueError(
                "this index was built with another model (loaded with allow_other_model=True): "
                "adding code embedded by this one would mix two models' embeddings"
            )
        return encoder.encode_many(
            texts, "code", batch_size=self.batch_size, max_length=self.max_length,
            show_progress=self.show_progress,
        )  # fmt: skip

    def add_units(self, units: Iterable[CodeUnit]) -> int:
        """Embed and add extracted functions; returns how many were added."""
        units = list(units)
        if not units:
            return 0
        records = [
            {"path": u.path, "line": u.line, "end_line": u.end_line, "name": u.name,
             "language": u.language}
            for u in units
        ]  # fmt: skip
        return self.add_embeddings(self._embed_codes([u.code for u in units]), records)

    def add_paths(
        self,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        languages: Iterable[str] | None = None,
        skip_tests: bool = True,
    ) -> int:
        """Index the functions of the source files under ``paths``.

        Files that cannot be read or parsed are counted in :attr:`skipped` and passed over,
        and so are files already in the index (``"already indexed"``: a file is indexed once;
        to pick up changes, build the index again).

        Returns:
            The number of functions added.

        Raises:
            ValueError: a path does not exist, or no function was found under ``paths``.
        """
        self._require_encoder()
        before = Skipped(self.skipped.counts.copy(), dict(self.skipped.examples))
        indexed = {os.path.abspath(r["path"]) for r in self.records if r.get("path")}
        units, repeated = [], set()
        for unit in iter_code_units(paths, languages, skip_tests=skip_tests, skipped=self.skipped):
            if os.path.abspath(unit.path) in indexed:
                repeated.add(unit.path)
            else:
                units.append(unit)
        for path in sorted(repeated):
            self.skipped.add("already indexed", path)
        if not units and repeated:
            return 0
        if not units:
            new = self.skipped.total - before.total
            raise ValueError(
                f"paths hold no function to index, got {paths!r}"
                + (f" ({new} files skipped: {self.skipped.summary()})" if new else "")
            )
        return self.add_units(units)

    def add_texts(self, texts: Sequence[str], *, names: Sequence[str] | None = None) -> int:
        """Index code snippets given as texts (kept in the index and returned in hits)."""
        if isinstance(texts, str):
            raise ValueError(f"texts must be a sequence of strings, got the string {texts!r}")
        texts = list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a non-empty sequence of strings")
        for i, text in enumerate(texts):
            if not text.strip():
                raise ValueError(f"texts[{i}] is blank: there is no code to index")
        if names is not None and len(names) != len(texts):
            raise ValueError(f"names must hold {len(texts)} names, got {len(names)}")
        records = [
            {"name": names[i] if names is not None else None, "text": text}
            for i, text in enumerate(texts)
        ]
        return self.add_embeddings(self._embed_codes(texts), records)

    # ------------------------------------------------------------------ searching
    def search_embeddings(self, queries: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS search: ``(scores, ids)``, each ``(n_queries, k)``; missing ids are -1."""
        _positive_int("k", k)
        self._require_entries()
        array = np.ascontiguousarray(queries, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(
                f"queries must be (n, {self.dim}) to match the index, got shape {array.shape} "
                "(a model other than the one the index was built with?)"
            )
        scores, ids = self._index.search(array, min(k, len(self)))
        return scores * self.scale, ids

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[SearchHit]]:
        """The top ``k`` hits of each query, best first."""
        if isinstance(queries, str) or not all(isinstance(q, str) for q in queries):
            raise ValueError(f"queries must be a sequence of strings, got {queries!r:.80}")
        for i, query in enumerate(queries):
            if not query.strip():
                raise ValueError(f"queries[{i}] is blank: a query needs words, got {query!r}")
        _positive_int("k", k)
        self._require_entries()
        encoder = self._require_encoder()
        vectors = encoder.encode(
            list(queries), "query", batch_size=self.batch_size, max_length=self.max_length
        )
        scores, ids = self.search_embeddings(vectors, k)
        return [
            [SearchHit(float(s), int(i), **self.records[i]) for s, i in zip(row_s, row_i) if i >= 0]
            for row_s, row_i in zip(scores, ids)
        ]

    def search(self, query: str, k: int = 10) -> list[SearchHit]:
        """The top ``k`` functions for one natural-language query, best first."""
        if not isinstance(query, str):
            raise ValueError(f"query must be a string, got {type(query).__name__}")
        if not query.strip():
            raise ValueError(f"query is blank: a query needs words, got {query!r}")
        return self.search_many([query], k)[0]

    # ------------------------------------------------------------------ files
    def save(
        self, directory: str | os.PathLike[str], *, extras: dict[str, str] | None = None
    ) -> Path:
        """Write ``index.faiss``, ``metadata.jsonl`` and ``search_index.json`` (no pickle).

        The folder is written beside ``directory`` and renamed into place, so a reader (or a
        save killed half way) sees the old index or the new one, never a mix; the manifest
        records each part's sha256 and the model's embeddings of a probe text. ``extras``
        (file name -> text) are written into the same folder in the same step, their sha256
        in the manifest too (``soft-infonce index`` adds the hybrid search's ``texts.jsonl``).

        Raises:
            IndexFolderError: ``directory`` is a file, or a folder holding something other
                than an index.

        Returns:
            The folder.
        """
        from soft_infonce.codesearch.search.storage import save_index

        return save_index(self, directory, extras)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        model: Any = None,
        *,
        load_model: bool = True,
        allow_other_model: bool = False,
    ) -> CodeIndex:
        """Read an index written by :meth:`save`, every part checked against its manifest.

        Args:
            directory: The index folder.
            model: The model to embed queries with; default: the folder recorded at build time.
            load_model: Load the recorded model when ``model`` is None (False: embeddings only).
            allow_other_model: Search with a model whose embeddings differ from those of the
                model that built the index (a warning instead of an error); nothing can then
                be added to the index.

        Raises:
            IndexFolderError: (a ``ValueError``) the folder holds no index, a part is missing,
                broken or changed (named, with the line for ``metadata.jsonl``), the parts
                disagree, or the model is not the one that built the index.
        """
        from soft_infonce.codesearch.search.storage import load_index

        return load_index(
            cls, directory, model, load_model=load_model, allow_other_model=allow_other_model
        )
