"""Hybrid code search: the dense index and BM25 over the same functions, fused by reciprocal
rank fusion (RRF, Cormack et al., SIGIR 2009).

A query is answered twice: by the model through the :class:`CodeIndex` and by Okapi BM25
(:class:`soft_infonce.bm25.BM25`, words split at punctuation, snake_case and camelCase) over
the functions' source text. Each answer is a ranking; an entry's fused score is
``sum over the rankings of weight / (k_rrf + rank)`` (ranks from 1), so an entry near the top
of either ranking comes out near the top, and one near the top of both comes first. The
scores of the two retrievers are never compared, only their ranks.

BM25 needs the functions' text, which a saved index does not keep: ``soft-infonce index``
saves it with the index, in the same atomic step (:data:`TEXTS_FILE`, one JSON object per
entry with its path, line and name; its sha256 in the manifest, and every line checked
against its entry on load); an index without that file reads the text back from the source
files it names.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soft_infonce.bm25 import BM25
from soft_infonce.codesearch.search.index import CodeIndex, SearchHit
from soft_infonce.codesearch.search.storage import verify_extra

__all__ = [
    "TEXTS_FILE",
    "HybridSearcher",
    "reciprocal_rank_fusion",
    "source_texts",
    "texts_jsonl",
]

logger = logging.getLogger(__name__)

TEXTS_FILE = "texts.jsonl"
_KEYS = ("path", "line", "name")  # what ties a line of TEXTS_FILE to an index entry


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]],
    *,
    k_rrf: float = 60.0,
    weights: Sequence[float] | None = None,
) -> list[tuple[int, float]]:
    """Fuse rankings of ids into one: ``score(d) = sum_r weights[r] / (k_rrf + rank_r(d))``.

    Args:
        rankings: Each a sequence of ids, best first (an id appears at most once in each).
        k_rrf: The rank offset (60 in Cormack et al.); smaller favours the top ranks more.
        weights: One weight per ranking (default 1 each).

    Returns:
        ``(id, score)`` pairs, best first; ties keep the order of first appearance, reading the
        rankings rank by rank.

    Examples:
        >>> reciprocal_rank_fusion([[3, 1, 2], [1, 4]], k_rrf=1.0)
        [(1, 1.0), (3, 0.5), (4, 0.3333333333333333), (2, 0.25)]
    """
    if not (isinstance(k_rrf, (int, float)) and not isinstance(k_rrf, bool) and k_rrf >= 0):
        raise ValueError(f"k_rrf must be a number >= 0, got {k_rrf!r}")
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"weights must hold {len(rankings)} numbers, got {len(weights)}")
    if any(not (isinstance(w, (int, float)) and w >= 0) for w in weights):
        raise ValueError(f"weights must be numbers >= 0, got {weights!r}")
    scores: dict[int, float] = {}
    first_seen: dict[int, tuple[int, int]] = {}
    for r, (ranking, weight) in enumerate(zip(rankings, weights)):
        for position, item in enumerate(ranking):
            item = int(item)
            scores[item] = scores.get(item, 0.0) + weight / (k_rrf + position + 1)
            seen = (position, r)
            if item not in first_seen or seen < first_seen[item]:
                first_seen[item] = seen
    return sorted(scores.items(), key=lambda pair: (-pair[1], first_seen[pair[0]]))


def source_texts(records: Sequence[dict[str, Any]]) -> list[str]:
    """Each entry's text: its ``text``, else lines ``line``..``end_line`` of its ``path``.

    Raises:
        ValueError: an entry has neither, or its file is gone or shorter than its lines.
    """
    files: dict[str, list[str]] = {}
    texts = []
    for i, record in enumerate(records):
        if isinstance(record.get("text"), str):
            texts.append(record["text"])
            continue
        path, line, end = record.get("path"), record.get("line"), record.get("end_line")
        if not (isinstance(path, str) and isinstance(line, int) and isinstance(end, int)):
            raise ValueError(f"entry {i} has neither a text nor a path with lines: {record!r:.120}")
        if path not in files:
            try:
                files[path] = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError as error:
                raise ValueError(
                    f"entry {i} ({record.get('name')}): cannot read {path} for its text: {error}"
                ) from error
        lines = files[path]
        if end > len(lines) or line < 1:
            raise ValueError(
                f"entry {i} ({record.get('name')}): {path} has {len(lines)} lines, the index "
                f"says {line}-{end}: the file changed since it was indexed; index it again"
            )
        texts.append("\n".join(lines[line - 1 : end]))
    return texts


def texts_jsonl(index: CodeIndex) -> str:
    """The content of :data:`TEXTS_FILE` for ``index``, from its entries' source (see the
    module): ``index.save(folder, extras={TEXTS_FILE: texts_jsonl(index)})``."""
    return "".join(
        json.dumps({key: record.get(key) for key in _KEYS} | {"text": text}, ensure_ascii=False)
        + "\n"
        for record, text in zip(index.records, source_texts(index.records))
    )


def read_texts(index: CodeIndex, directory: str | os.PathLike[str]) -> list[str]:
    """The entries' texts from :data:`TEXTS_FILE`, checked against the manifest's sha256 and
    entry by entry against the index; from the source files when the folder has no such file."""
    file = verify_extra(directory, TEXTS_FILE)  # its sha256, where the manifest records one
    if file is None:
        logger.warning("%s has no %s: reading the functions from the files", directory, TEXTS_FILE)
        return source_texts(index.records)
    texts = []
    with open(file, encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                entry = json.loads(raw)
                text = entry["text"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{file}:{lineno}: not an entry with a text ({error})") from None
            i = lineno - 1
            if i >= len(index.records) or any(
                entry.get(key) != index.records[i].get(key) for key in _KEYS
            ):
                raise ValueError(
                    f"{file}:{lineno} does not match entry {i} of the index: the files are from "
                    "different builds; run `soft-infonce index` again"
                )
            texts.append(text)
    if len(texts) != len(index.records):
        raise ValueError(f"{file} holds {len(texts)} texts for {len(index.records)} entries")
    return texts


class HybridSearcher:
    """Dense search through a :class:`CodeIndex` fused with BM25 over the same entries.

    Args:
        index: The dense index (built, or loaded with :meth:`CodeIndex.load`).
        texts: The text of each index entry, in index order (what BM25 scores).
        k_rrf: RRF's rank offset (60, as Cormack et al.).
        depth: How many candidates each retriever contributes before fusion (at least ``k``
            of a search); ``None`` ranks every entry (exact, slower on large indexes).
        bm25: The BM25 scorer (default ``BM25()``: k1 1.2, b 0.75, code-aware words).

    Examples:
        >>> searcher = HybridSearcher.load("code-index/")  # doctest: +SKIP
        >>> for hit in searcher.search("parse a json string", k=5):  # doctest: +SKIP
        ...     print(hit.location, hit.name)
    """

    def __init__(
        self,
        index: CodeIndex,
        texts: Sequence[str],
        *,
        k_rrf: float = 60.0,
        depth: int | None = 100,
        bm25: BM25 | None = None,
    ) -> None:
        texts = list(texts)
        if len(texts) != len(index) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"texts must hold one string per index entry ({len(index)}), got "
                             f"{len(texts)} items")  # fmt: skip
        if depth is not None and (
            isinstance(depth, bool) or not isinstance(depth, int) or depth < 1
        ):
            raise ValueError(f"depth must be a positive int or None, got {depth!r}")
        reciprocal_rank_fusion([], k_rrf=k_rrf)  # checks k_rrf
        self.index, self.k_rrf, self.depth = index, float(k_rrf), depth
        self.bm25 = bm25 if bm25 is not None else BM25()
        self._terms, self._weights = self.bm25.index(texts)  # (V,), [V, N]

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        model: Any = None,
        *,
        allow_other_model: bool = False,
        **kwargs: Any,
    ) -> HybridSearcher:
        """The index saved in ``directory`` (:meth:`CodeIndex.load`) with its entries' texts
        (see the module); ``kwargs`` go to the constructor."""
        index = CodeIndex.load(directory, model=model, allow_other_model=allow_other_model)
        return cls(index, read_texts(index, directory), **kwargs)

    def lexical_ranking(self, queries: Sequence[str], depth: int) -> list[np.ndarray]:
        """Each query's top ``depth`` entry ids by BM25, best first (entries scoring 0 left out)."""
        matrix = self.bm25.query_matrix(list(queries), self._terms)
        scores = (matrix @ self._weights).toarray() if self._weights.shape[0] else np.zeros(
            (len(queries), len(self.index)))  # fmt: skip
        rankings = []
        for row in scores:
            top = np.argsort(-row, kind="stable")[:depth]
            rankings.append(top[row[top] > 0])
        return rankings

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[SearchHit]]:
        """The top ``k`` of each query by fused rank, best first; ``score`` is the RRF score."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        depth = len(self.index) if self.depth is None else min(max(self.depth, k), len(self.index))
        dense = self.index.search_many(queries, k=depth)
        lexical = self.lexical_ranking(queries, depth)
        results = []
        for hits, words in zip(dense, lexical):
            by_id = {hit.id: hit for hit in hits}
            rankings = [[hit.id for hit in hits], words.tolist()]
            fused = reciprocal_rank_fusion(rankings, k_rrf=self.k_rrf)
            top = []
            for entry, score in fused[:k]:
                hit = by_id.get(entry) or SearchHit(0.0, entry, **self.index.records[entry])
                top.append(dataclasses.replace(hit, score=score))
            results.append(top)
        return results

    def search(self, query: str, k: int = 10) -> list[SearchHit]:
        """The top ``k`` entries for one query, best first."""
        if not isinstance(query, str):
            raise ValueError(f"query must be a string, got {type(query).__name__}")
        return self.search_many([query], k)[0]
