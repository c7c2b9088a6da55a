"""FAISS, imported when first needed (naming the extra to install when it is missing), and
the three kinds of index a :class:`~soft_infonce.codesearch.search.CodeIndex` builds."""

from __future__ import annotations

from typing import Any

import numpy as np

INDEX_TYPES = ("flat", "hnsw", "ivf")
_IVF_TRAIN_PER_LIST = 64  # training vectors per IVF list (a sample of the first add)


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as error:
        raise ImportError('code search needs FAISS: pip install "soft-infonce[search]"') from error
    return faiss


def new_faiss_index(
    index_type: str, first: np.ndarray, *, hnsw_m: int, ef_construction: int, nlist: int | None
) -> Any:
    """An empty inner-product index of ``first``'s width; ``"ivf"`` is trained on a sample of
    ``first`` (``nlist`` lists)."""
    faiss, dim = import_faiss(), first.shape[1]
    if index_type == "flat":
        return faiss.IndexFlatIP(dim)
    if index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        return index
    assert nlist is not None  # the caller chooses it from the first add
    if nlist > len(first):
        raise ValueError(
            f"nlist must be at most the {len(first)} vectors of the first add, got {nlist}"
        )
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter, index.cp.seed = 10, 0
    sample = np.random.default_rng(0).permutation(len(first))[: _IVF_TRAIN_PER_LIST * nlist]
    index.train(first[np.sort(sample)])
    return index
