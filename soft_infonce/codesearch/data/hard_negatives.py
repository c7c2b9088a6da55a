"""Mine hard negatives for (query, code) pairs with BM25 or a dense encoder.

The output is the hard-negative schema the collator and the trainer take (one row per pair):
``query``, ``code``, ``negatives`` (k codes) and ``negative_queries`` (the query paired with
each negative, so query-query estimators can weigh it). ``output_format="n-tuple"`` gives
sentence-transformers' ``(query, code, negative_1, ..., negative_k)`` instead.

The selection follows ``sentence_transformers.util.mine_hard_negatives`` (same option names,
same margin definitions, same order of the steps), so a dense mining with a
sentence-transformers model picks the negatives that function picks (tested); it is not
called directly because it needs a ``SentenceTransformer``, dedupes codes by exact text only,
reorders and drops rows, and does not keep the negatives' own queries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from soft_infonce.codesearch.data.negative_spec import check_margins

if TYPE_CHECKING:
    import datasets

    from soft_infonce.bm25 import BM25

logger = logging.getLogger(__name__)
_MAX_CHUNK_VALUES = 2**25  # scores held at once: 128 MiB of float32


def _read_pairs(pairs: Any) -> tuple[list[str], list[str]]:
    """The queries and codes of a Dataset or of a sequence of mappings, checked."""
    if hasattr(pairs, "column_names"):
        missing = {"query", "code"} - set(pairs.column_names)
        if missing:
            raise ValueError(
                f"pairs must have columns 'query' and 'code', got {pairs.column_names}"
            )
        queries, codes = list(pairs["query"]), list(pairs["code"])
    elif isinstance(pairs, Sequence) and not isinstance(pairs, (str, bytes)):
        if not all(isinstance(row, Mapping) and {"query", "code"} <= row.keys() for row in pairs):
            raise ValueError(
                "pairs must be a datasets.Dataset or a list of dicts with 'query' and 'code'"
            )
        queries, codes = [row["query"] for row in pairs], [row["code"] for row in pairs]
    else:
        raise TypeError(
            f"pairs must be a datasets.Dataset or a list of dicts, got {type(pairs).__name__}"
        )
    for name, texts in (("query", queries), ("code", codes)):
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"pairs[{i}][{name!r}] must be a non-empty str, got {text!r:.60}")
    return queries, codes


def _check_options(
    k: int, range_min: int, range_max: int | None, sampling: str, output_format: str
) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if isinstance(range_min, bool) or not isinstance(range_min, int) or range_min < 0:
        raise ValueError(f"range_min must be an int >= 0, got {range_min!r}")
    if range_max is not None and (not isinstance(range_max, int) or range_max - range_min < k):
        raise ValueError(
            f"range_max must leave at least k={k} ranks after range_min={range_min}, "
            f"got {range_max!r}"
        )
    if sampling not in ("top", "random"):
        raise ValueError(f"sampling must be 'top' or 'random', got {sampling!r}")
    if output_format not in ("lists", "n-tuple"):
        raise ValueError(f"output_format must be 'lists' or 'n-tuple', got {output_format!r}")


def _bm25_scores(
    queries: list[str], pool: list[str], bm25: BM25 | None, chunk: int
) -> Iterator[tuple[int, np.ndarray]]:
    from soft_infonce.bm25 import BM25

    yield from (bm25 or BM25()).iter_scores(queries, pool, chunk_size=chunk)


def _dense_scores(
    queries: list[str],
    pool: list[str],
    model: Any,
    chunk: int,
    batch_size: int,
    max_query_length: int,
    max_code_length: int,
    show_progress: bool,
) -> Iterator[tuple[int, np.ndarray]]:
    import torch

    if hasattr(model, "encode_texts"):  # a soft_infonce BiEncoder: its own score (scale * q.c)
        encode = {"show_progress": show_progress, "batch_size": batch_size}
        q = model.encode_texts(queries, side="query", max_length=max_query_length, **encode)
        c = model.encode_texts(pool, side="code", max_length=max_code_length, **encode)
    elif hasattr(model, "encode_query") and hasattr(model, "similarity"):  # sentence-transformers
        encode = {
            "batch_size": batch_size,
            "show_progress_bar": show_progress,
            "normalize_embeddings": True,
            "convert_to_tensor": True,
        }
        q, c = model.encode_query(queries, **encode), model.encode_document(pool, **encode)
    else:
        raise TypeError(
            "method='dense' needs model=a BiEncoder or a SentenceTransformer, "
            f"got {type(model).__name__}"
        )
    with torch.no_grad():
        for start in range(0, len(queries), chunk):
            yield start, model.similarity(q[start : start + chunk], c).float().cpu().numpy()


def _window(scores: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``window`` best columns of each row, best first, ties broken by column order."""
    if window < scores.shape[1]:
        index = np.argpartition(-scores, window - 1, axis=1)[:, :window]
        lowest = np.take_along_axis(scores, index, axis=1).min(axis=1, keepdims=True)
        inside = (np.take_along_axis(scores, index, axis=1) == lowest).sum(axis=1)
        for r in np.flatnonzero((scores == lowest).sum(axis=1) > inside):  # a tie cut in two
            above = np.flatnonzero(scores[r] > lowest[r])
            tied = np.flatnonzero(scores[r] == lowest[r])[: window - len(above)]
            index[r] = np.concatenate([above, tied])
    else:
        index = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    values = np.take_along_axis(scores, index, axis=1)
    order = np.lexsort((index, -values), axis=-1)
    return np.take_along_axis(index, order, axis=1), np.take_along_axis(values, order, axis=1)


def _drops(
    values: np.ndarray, positive: np.ndarray, thresholds: dict[str, float | None]
) -> Iterator[tuple[str, np.ndarray]]:
    """(filter name, mask of the candidates it drops) for each filter that is set."""
    limit = {
        "max_score": lambda x: values > x,
        "min_score": lambda x: values < x,
        "absolute_margin": lambda x: values + x > positive[:, None],
        "relative_margin": lambda x: values > (positive - np.abs(positive) * x)[:, None],
    }
    for name, value in thresholds.items():
        if value is not None:
            yield name, limit[name](value)


def mine_hard_negatives(
    pairs: datasets.Dataset | Sequence[Mapping[str, str]],
    k: int = 3,
    method: Literal["bm25", "dense"] = "bm25",
    *,
    model: Any = None,
    bm25: BM25 | None = None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    sampling: Literal["top", "random"] = "top",
    incomplete: Literal["drop", "raise"] = "drop",
    output_format: Literal["lists", "n-tuple"] = "lists",
    output_scores: bool = False,
    batch_size: int = 64,
    max_query_length: int = 64,
    max_code_length: int = 256,
    chunk_size: int = 512,
    show_progress: bool = False,
    seed: int = 0,
) -> datasets.Dataset:
    """Adds ``k`` hard negatives to every (query, code) pair, mined from the pairs' own codes.

    The pool is the pairs' codes deduplicated after whitespace normalisation (``" ".join(
    code.split())``; the first occurrence's text and query represent a group). For each pair
    the candidates are ranked by score against its query; these are never negatives: the
    pair's own code and every code equal to it after normalisation, and every code paired
    with the same query text (as in sentence-transformers, several codes for one query are
    all positives). Then, as in ``sentence_transformers.util.mine_hard_negatives``:

    1. keep the ``range_max`` best candidates (default: ``range_min + k``, or
       ``range_min + 10 k`` with a filter or ``sampling="random"``);
    2. drop those with ``score > max_score``, ``score < min_score``,
       ``score + absolute_margin > positive``, or
       ``score > positive - |positive| * relative_margin`` (positive-aware: 0.05 keeps
       negatives at least 5% of the positive's score below it, NV-Retriever's TopK-PercPos);
    3. skip the first ``range_min`` survivors; take the next ``k`` (``"top"``) or ``k`` of
       the rest at random (``"random"``, seeded, kept in rank order).

    Scores: BM25 (:class:`soft_infonce.bm25.BM25`, code tokens) of the query against the
    codes; dense: the model's own score (a ``BiEncoder``: ``scale * q.c``; a
    sentence-transformers model: cosine of normalised embeddings, as its util does).

    Bad input: ``k`` larger than the distinct codes a pair can draw from, a pool whose codes
    are all duplicates of one another, and empty pairs or texts raise ``ValueError``. A pair
    for which the filters leave fewer than ``k`` negatives is dropped with a warning
    (``incomplete="drop"``, as sentence-transformers does) or raises (``"raise"``).

    Args:
        pairs: A ``datasets.Dataset`` with columns ``query`` and ``code``, or a list of dicts.
        k: Negatives per pair, the same for every row.
        method: ``"bm25"`` or ``"dense"`` (needs ``model``).
        model: A ``BiEncoder`` (its ``encode_texts``) or a sentence-transformers model.
        bm25: The BM25 scorer (settings, tokenizer); ``BM25()`` by default.
        range_min: Survivors to skip before taking negatives (the likeliest false negatives).
        range_max: Ranks to consider (after removing positives).
        max_score: Drop candidates scoring above this.
        min_score: Drop candidates scoring below this.
        absolute_margin: Drop candidates within this of the positive's score.
        relative_margin: Drop candidates within this fraction of ``|positive|`` of it.
        sampling: ``"top"`` (the hardest) or ``"random"`` (from the window).
        incomplete: ``"drop"`` or ``"raise"`` for pairs the filters leave short of ``k``.
        output_format: ``"lists"`` (this library's schema) or ``"n-tuple"``
            (``query, code, negative_1..k``: sentence-transformers' format, which has no
            room for the negatives' queries).
        output_scores: Add ``scores`` = ``[positive, negative_1, ..., negative_k]``.
        batch_size: Texts per forward pass (dense).
        max_query_length: Query tokens (dense, ``BiEncoder``).
        max_code_length: Code tokens (dense, ``BiEncoder``).
        chunk_size: Queries scored at once (memory: ``chunk_size x pool`` floats).
        show_progress: Show progress bars.
        seed: Seed of ``sampling="random"``; the same inputs and seed give the same output.

    Returns:
        A ``datasets.Dataset``: ``query``, ``code``, ``negatives``, ``negative_queries``
        (list columns: the schema the collator takes, which keeps each negative's query for
        query-query estimators), or the n-tuple columns.

    Examples:
        >>> pairs = [{"query": "read a file", "code": "def read(p): return open(p).read()"},
        ...          {"query": "write a file", "code": "def write(p, s): open(p).write(s)"},
        ...          {"query": "sort a list", "code": "def sort(xs): return sorted(xs)"}]
        >>> mine_hard_negatives(pairs, k=1)[0]["negatives"]
        ['def write(p, s): open(p).write(s)']
    """
    import datasets
    from tqdm.auto import tqdm

    _check_options(k, range_min, range_max, sampling, output_format)
    if incomplete not in ("drop", "raise"):
        raise ValueError(f"incomplete must be 'drop' or 'raise', got {incomplete!r}")
    queries, codes = _read_pairs(pairs)
    if not queries:
        raise ValueError("pairs is empty: there is no pool to mine negatives from")
    group: dict[str, int] = {}
    row_pool = np.array([group.setdefault(" ".join(c.split()), len(group)) for c in codes])
    first = {p: i for i, p in reversed(list(enumerate(row_pool)))}
    pool = [codes[first[p]] for p in range(len(group))]
    pool_queries = [queries[first[p]] for p in range(len(group))]
    if len(pool) == 1:
        raise ValueError(
            f"all {len(codes)} codes are duplicates of one another after whitespace "
            "normalisation: no negatives can be mined"
        )
    positives: dict[str, set[int]] = {}
    for query, p in zip(queries, row_pool):
        positives.setdefault(query, set()).add(int(p))
    fewest = len(pool) - max(len(s) for s in positives.values())
    if k > fewest:
        raise ValueError(
            f"k={k} is larger than the pool: some pair has only {fewest} distinct codes besides "
            f"its positives ({len(pool)} distinct codes in {len(codes)} pairs)"
        )
    filtered = any(x is not None for x in (max_score, min_score, absolute_margin, relative_margin))
    check_margins(
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        max_score=max_score,
        min_score=min_score,
    )
    if range_max is None:
        range_max = range_min + (10 * k if filtered or sampling == "random" else k)
    window = min(range_max, len(pool))
    chunk = max(1, min(chunk_size, _MAX_CHUNK_VALUES // len(pool)))
    if method == "bm25":
        chunks = _bm25_scores(queries, pool, bm25, chunk)
    elif method == "dense":
        chunks = _dense_scores(
            queries,
            pool,
            model,
            chunk,
            batch_size,
            max_query_length,
            max_code_length,
            show_progress,
        )
    else:
        raise ValueError(f"method must be 'bm25' or 'dense', got {method!r}")

    rng = np.random.default_rng(seed)
    thresholds = {
        "max_score": max_score,
        "min_score": min_score,
        "absolute_margin": absolute_margin,
        "relative_margin": relative_margin,
    }
    picked: list[np.ndarray | None] = []
    positive_scores, negative_scores = [], []
    skipped = {"max_score": 0, "min_score": 0, "absolute_margin": 0, "relative_margin": 0}
    progress = tqdm(total=len(queries), desc="mining negatives", disable=not show_progress)
    for start, scores in chunks:  # (B, pool)
        rows = np.arange(start, start + len(scores))
        positive = scores[np.arange(len(rows)), row_pool[rows]].astype(np.float64)  # (B,)
        scores = scores.astype(np.float64)
        for r, row in enumerate(rows):
            scores[r, list(positives[queries[row]])] = -np.inf
        index, values = _window(scores, window)  # (B, window) each, best first
        keep = np.isfinite(values)
        for name, drop in _drops(values, positive, thresholds):
            skipped[name] += int((keep & drop).sum())
            keep &= ~drop
        for r in range(len(rows)):
            survivors = np.flatnonzero(keep[r])[range_min:]
            if len(survivors) < k:
                picked.append(None)
                continue
            if sampling == "random":
                survivors = np.sort(rng.choice(survivors, size=k, replace=False))
            chosen = survivors[:k]
            picked.append(index[r, chosen])
            positive_scores.append(float(positive[r]))
            negative_scores.append(values[r, chosen].tolist())
        progress.update(len(rows))
    progress.close()

    short = [i for i, p in enumerate(picked) if p is None]
    if any(skipped.values()):
        logger.info("mine_hard_negatives skipped candidates: %s", skipped)
    if short:
        message = (
            f"{len(short)} of {len(queries)} pairs have fewer than k={k} negatives left after "
            f"the filters (first: pair {short[0]}); widen range_max or loosen the filters"
        )
        if incomplete == "raise" or len(short) == len(queries):
            raise ValueError(message)
        logger.warning("%s; dropping them", message)
    kept = [i for i, p in enumerate(picked) if p is not None]
    kept_picks = [p for p in picked if p is not None]  # aligned with kept
    negatives = [[pool[j] for j in p] for p in kept_picks]
    columns: dict[str, list[Any]] = {
        "query": [queries[i] for i in kept],
        "code": [codes[i] for i in kept],
    }
    if output_format == "lists":
        columns["negatives"] = negatives
        columns["negative_queries"] = [[pool_queries[j] for j in p] for p in kept_picks]
    else:
        for n in range(k):
            columns[f"negative_{n + 1}"] = [row[n] for row in negatives]
    if output_scores:
        columns["scores"] = [[p, *n] for p, n in zip(positive_scores, negative_scores)]
    return datasets.Dataset.from_dict(columns)
