"""FAISS, imported when first needed, with the extra to install when it is missing."""

from __future__ import annotations

from typing import Any


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError as error:
        raise ImportError('code search needs FAISS: pip install "soft-infonce[search]"') from error
    return faiss
