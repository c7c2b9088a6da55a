"""Know before you train: how many false negatives will your batches hold, and what would
Soft-InfoNCE do about them?

:func:`inspect_pairs` reads query-code pairs and reports:

* near-duplicate groups: pairs linked when their docstrings or their codes have token Jaccard
  >= ``threshold`` (connected components, so a chain of copies is one group);
* the share of in-batch negatives that are likely false negatives (a near-duplicate of the row's
  own pair), under random batches and under topic-clustered batches
  (:class:`~soft_infonce.sampling.ClusteredBatchSampler`);
* the Eq. 4 weights the chosen estimator (at its preset) gives those likely false negatives and
  the other negatives, and how many it clamps at ``min_weight``;
* a one-line verdict, from the controlled experiment ``benchmarks/false_negatives.py``.

The command line (:mod:`soft_infonce.codesearch.data.report_command`):
``soft-infonce inspect pairs.jsonl [--batch-size 32] [--estimator bm25]``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from soft_infonce.bm25 import code_tokenize
from soft_infonce.checks import check_int, check_number
from soft_infonce.estimators import WeightEstimator
from soft_infonce.estimators.registry import EstimatorContext, build_estimator
from soft_infonce.functional import negative_weights
from soft_infonce.presets import resolve
from soft_infonce.sampling import ClusteredBatchSampler, topic_labels

__all__ = [
    "PairsReport",
    "inspect_pairs",
    "near_duplicate_groups",
    "near_duplicate_links",
    "read_pairs",
    "verdict",
]

#: From the controlled experiment (benchmarks/false_negatives.py, MiniLM, CSN-Ruby, batch 16,
#: 3 seeds): with 25% of in-batch negatives false, InfoNCE lost 0.011 test MRR to the oracle
#: that masks them (p = 0.14); GISTEmbedLoss gained 0.024 over InfoNCE (p = 0.003), Soft-InfoNCE
#: with positive-aware weights from the same frozen encoder 0.009 (p = 0.002), the paper's
#: estimators at their presets 0.002-0.003 (p >= 0.19). At 0% every loss stayed within 0.008.
NOTICEABLE_SHARE = 0.10
EXPERIMENT_LINE = (
    "at 25% false negatives (controlled experiment) InfoNCE lost 0.011 MRR to masking them; "
    "GIST gained 0.024, positive-aware Soft-InfoNCE 0.009, the paper's presets <= 0.003"
)
#: From benchmarks/real_duplicates.py (pairs mined from pip, setuptools and what they vendor, 3
#: seeds): with 2.1% likely false negatives in clustered batches, the largest gains over InfoNCE
#: were 0.016 (GIST, CoSQA) and 0.012 (Soft-InfoNCE with pa-guide, CoSQA, p < 0.001).
REAL_DATA_LINE = (
    "on real vendored code with 2.1% likely false negatives per clustered batch, GIST gained "
    "0.016 MRR over InfoNCE and positive-aware Soft-InfoNCE 0.012 on CoSQA, nothing on Ruby"
)


@dataclass
class PairsReport:
    """What :func:`inspect_pairs` found (``to_dict`` for JSON)."""

    pairs: int
    batch_size: int
    estimator: str
    exact_duplicate_codes: int
    groups: int
    pairs_in_groups: int
    largest_groups: list[int]
    examples: list[list[str]]
    batches: dict[str, dict[str, float]] = field(default_factory=dict)
    verdict: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_pairs(
    path: str | Path, query_field: str = "query", code_field: str = "code"
) -> tuple[list[str], list[str]]:
    """(queries, codes) of a JSON-lines file; a bad line raises ``ValueError`` naming file:line."""
    queries: list[str] = []
    codes: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected an object, got {type(row).__name__}")
            for name in (query_field, code_field):
                value = row.get(name)
                if isinstance(value, list):
                    value = " ".join(map(str, value))
                if not isinstance(value, str) or not value.strip():
                    raise ValueError(f"{path}:{number}: field {name!r} missing or blank")
                (queries if name == query_field else codes).append(value)
    return queries, codes


def _binary(texts: Sequence[str]) -> sp.csr_matrix:
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, text in enumerate(texts):
        ids = {vocab.setdefault(t.lower(), len(vocab)) for t in code_tokenize(text)}
        rows += [i] * len(ids)
        cols += sorted(ids)
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(texts), max(1, len(vocab))))


def near_duplicate_links(
    texts: Sequence[str], threshold: float, block: int = 2048
) -> sp.coo_matrix:
    """Pairs ``(i, j)``, ``i < j``, whose token-set Jaccard is at least ``threshold``."""
    x = _binary(texts)
    sizes = np.asarray(x.sum(axis=1)).ravel()
    rows, cols = [], []
    for start in range(0, x.shape[0], block):
        inter = (x[start : start + block] @ x.T).tocoo()  # shared tokens, nonzero pairs only
        i, j = inter.row + start, inter.col
        union = sizes[i] + sizes[j] - inter.data
        keep = (i < j) & (inter.data >= threshold * np.maximum(union, 1))
        rows.append(i[keep])
        cols.append(j[keep])
    n = len(texts)
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))


def _near_duplicate_graph(
    queries: Sequence[str], codes: Sequence[str], threshold: float
) -> sp.csr_matrix:
    """Symmetric 0/1 matrix: pairs whose docstrings or codes have token Jaccard >= threshold."""
    links = near_duplicate_links(queries, threshold) + near_duplicate_links(codes, threshold)
    linked = (links + links.T).tocsr()
    linked.data[:] = 1
    return linked


def near_duplicate_groups(
    queries: Sequence[str], codes: Sequence[str], threshold: float
) -> np.ndarray:
    """Group id of every pair: pairs whose docstrings or codes have token Jaccard >=
    ``threshold`` are joined, then connected components (a chain of copies is one group)."""
    return connected_components(_near_duplicate_graph(queries, codes, threshold), directed=False)[1]


def _estimator(
    estimator: str | WeightEstimator, estimator_model: str | None
) -> tuple[WeightEstimator, str]:
    """The estimator and its name in the report; a name is built through the registry."""
    if isinstance(estimator, WeightEstimator):
        return estimator, type(estimator).__name__
    built = build_estimator(estimator, EstimatorContext(estimator_model=estimator_model))
    if getattr(built, "uses_scores", False):
        raise ValueError(
            f"estimator {estimator!r} reads the training model's own scores: the report needs "
            "an estimator that scores texts"
        )
    return built, estimator


def _batch_figures(
    batches: Sequence[Sequence[int]],
    linked: sp.csr_matrix,
    estimator: WeightEstimator,
    queries: Sequence[str],
    codes: Sequence[str],
    min_weight: float,
) -> dict[str, float]:
    """Likely-false-negative share of the batches and the weights the estimator gives them."""
    settings = resolve(estimator)
    on_fn, on_rest, total, fn = [], [], 0, 0
    for batch in batches:
        b = np.asarray(batch)
        same = linked[b][:, b].toarray().astype(bool)
        np.fill_diagonal(same, False)
        total += len(b) * (len(b) - 1)
        fn += int(same.sum())
        q = [queries[i] for i in b]
        sim = estimator(q, [codes[i] for i in b], q)
        w = negative_weights(sim, *settings, min_weight).numpy()
        off = ~np.eye(len(b), dtype=bool)
        on_fn.append(w[same])
        on_rest.append(w[off & ~same])
    fn_w, rest_w = np.concatenate(on_fn), np.concatenate(on_rest)
    nan = float("nan")
    return {
        "false_negative_share": fn / total if total else 0.0,
        "w_false_negatives": float(fn_w.mean()) if fn_w.size else nan,
        "w_other_negatives": float(rest_w.mean()) if rest_w.size else nan,
        "clamped_false_negatives": float((fn_w <= min_weight + 1e-6).mean()) if fn_w.size else nan,
        "clamped_other_negatives": float((rest_w <= min_weight + 1e-6).mean()),
    }


def verdict(random_share: float, clustered_share: float) -> str:
    """One line: can Soft-InfoNCE (or any false-negative handling) matter for this data?"""
    worst = max(random_share, clustered_share)
    if worst < 0.01:
        return (
            f"Likely false negatives are rare ({100 * random_share:.2f}% random, "
            f"{100 * clustered_share:.2f}% clustered): InfoNCE will do; weighting negatives "
            "cannot change much here."
        )
    if worst < NOTICEABLE_SHARE:
        return (
            f"{100 * worst:.1f}% of in-batch negatives look like false negatives: below the "
            f"{100 * NOTICEABLE_SHARE:.0f}% where the controlled experiment saw losses differ; "
            f"expect small effects ({REAL_DATA_LINE})."
        )
    return (
        f"{100 * worst:.1f}% of in-batch negatives look like false negatives: enough to matter "
        f"({EXPERIMENT_LINE}); deduplicate, or mask / down-weight them (GISTEmbedLoss, or "
        "Soft-InfoNCE with a PositiveAwareEstimator over a frozen encoder)."
    )


def inspect_pairs(
    queries: Sequence[str],
    codes: Sequence[str],
    *,
    batch_size: int = 32,
    threshold: float = 0.5,
    estimator: str | WeightEstimator = "bm25",
    estimator_model: str | None = None,
    n_clusters: int | None = None,
    min_weight: float = 0.1,
    seed: int = 0,
) -> PairsReport:
    """The data report for ``queries[i]`` paired with ``codes[i]`` (see the module docstring).

    Args:
        queries: The pairs' queries (docstrings).
        codes: The pairs' codes.
        batch_size: Rows per training batch.
        threshold: Token Jaccard at which two docstrings (or two codes) are near-duplicates.
        estimator: A registered estimator name (``soft_infonce.estimators.registry``), an
            import string, or a :class:`~soft_infonce.WeightEstimator`; used at its preset.
        estimator_model: The frozen model of a model-based estimator (``simcse``, ``trained``).
        n_clusters: k-means clusters of the clustered batches; ``None``: pairs // batch size.
        min_weight: The weights' lower clamp.
        seed: Seed of the random batches and of the clustering.

    Raises:
        ValueError: lengths differ, fewer pairs than ``batch_size``, ``threshold`` outside
            (0, 1], an unknown estimator or one without a text path.
    """
    n = len(queries)
    if n != len(codes):
        raise ValueError(f"queries and codes differ in length: {n} vs {len(codes)}")
    check_int("batch_size", batch_size, minimum=2)
    if n < batch_size:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} pairs: no full batch")
    check_number("threshold", threshold, low=0, high=1, low_open=True)
    check_number("min_weight", min_weight, low=0, high=1, low_open=True)
    est, name = _estimator(estimator, estimator_model)
    linked = _near_duplicate_graph(queries, codes, threshold)
    _, component = connected_components(linked, directed=False)
    sizes = np.bincount(component)
    grouped = np.flatnonzero(sizes >= 2)
    order = grouped[np.argsort(-sizes[grouped], kind="stable")]
    examples = [[queries[i] for i in np.flatnonzero(component == g)[:3]] for g in order[:3]]
    rng = np.random.default_rng(seed)
    full = n // batch_size * batch_size
    random_batches = rng.permutation(n)[:full].reshape(-1, batch_size).tolist()
    labels = topic_labels(queries, batch_size, n_clusters, seed=seed)
    clustered = ClusteredBatchSampler(labels, batch_size, drop_last=True, seed=seed).batches(0)
    clustered = [b for b in clustered if len(b) == batch_size]
    figures = {
        kind: _batch_figures(batches, linked, est, queries, codes, min_weight)
        for kind, batches in (("random", random_batches), ("clustered", clustered))
    }
    return PairsReport(
        pairs=n,
        batch_size=batch_size,
        estimator=name,
        exact_duplicate_codes=n - len(set(codes)),
        groups=len(grouped),
        pairs_in_groups=int(sizes[grouped].sum()),
        largest_groups=sizes[order[:5]].tolist(),
        examples=examples,
        batches=figures,
        verdict=verdict(
            figures["random"]["false_negative_share"], figures["clustered"]["false_negative_share"]
        ),
    )
