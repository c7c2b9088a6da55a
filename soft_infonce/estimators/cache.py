"""Content-keyed embedding cache for frozen estimators, stored as safetensors.

A frozen encoder gives the same embedding for the same text for the whole run, so each
distinct text is embedded once and looked up by the sha256 of its content afterwards.
On disk a cache is one safetensors file: per side ``"<side>.keys"`` (uint8, ``[n, 32]``,
the sha256 digests) and ``"<side>.embeddings"`` (float32, ``[n, dim]``), with metadata
naming the format, the model identity, each side's embedding dimension and a sha256 checksum
of the payload (safetensors has none), so a damaged file is never used silently.

This module knows nothing of estimators: it is given an ``encode`` function and an identity.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from soft_infonce.checks import check_int, check_tensor, check_texts

__all__ = ["CACHE_FORMAT", "CACHE_VERSION", "EmbeddingCache", "EmbeddingStore", "text_key"]

CACHE_FORMAT = "soft-infonce-embedding-cache"
CACHE_VERSION = "2"  # 2: the metadata holds a checksum of the payload

Encode = Callable[[list[str]], torch.Tensor]


def text_key(text: str) -> bytes:
    """The cache key of a text: the sha256 digest of its UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def payload_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors``, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        data = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


class EmbeddingStore:
    """In-memory embeddings of one side, keyed by text content (sha256 digests).

    Rows live in one growing float32 CPU buffer, so a lookup is a single ``index_select``.
    """

    def __init__(self) -> None:
        self._rows: dict[bytes, int] = {}
        self._buffer: torch.Tensor | None = None  # (capacity, dim)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: bytes) -> bool:
        return key in self._rows

    @property
    def dim(self) -> int | None:
        """The embedding dimension, or ``None`` while the store is empty."""
        return None if self._buffer is None else self._buffer.shape[1]

    def add(self, keys: Sequence[bytes], embeddings: torch.Tensor) -> None:
        """Store ``embeddings[i]`` under ``keys[i]``; existing keys are left as they are."""
        embeddings = check_tensor("embeddings", embeddings).detach().to("cpu", torch.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(keys):
            raise ValueError(
                f"embeddings must have shape ({len(keys)}, dim), got {tuple(embeddings.shape)}"
            )
        if self.dim is not None and embeddings.shape[1] != self.dim:
            raise ValueError(
                f"embeddings must have dim {self.dim} like the cached ones, "
                f"got {embeddings.shape[1]}"
            )
        new, seen = [], set()
        for i, key in enumerate(keys):
            if key not in self._rows and key not in seen:
                new.append(i)
                seen.add(key)
        if not new:
            return
        start = len(self._rows)
        needed = start + len(new)
        if self._buffer is None or needed > self._buffer.shape[0]:
            capacity = max(needed, 2 * (0 if self._buffer is None else self._buffer.shape[0]), 64)
            grown = torch.empty(capacity, embeddings.shape[1], dtype=torch.float32)
            if self._buffer is not None:
                grown[:start] = self._buffer[:start]
            self._buffer = grown
        for offset, i in enumerate(new):
            self._rows[keys[i]] = start + offset
        self._buffer[start:needed] = embeddings[new]

    def rows(self, keys: Sequence[bytes]) -> list[int | None]:
        """The row of each key, ``None`` where the key is not stored."""
        return [self._rows.get(key) for key in keys]

    def gather(self, rows: Sequence[int]) -> torch.Tensor:
        """The embeddings at ``rows`` as a new ``(len(rows), dim)`` tensor."""
        assert self._buffer is not None, "gather on an empty store"
        return self._buffer.index_select(0, torch.as_tensor(rows, dtype=torch.long))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys as uint8 ``(n, 32)`` and the embeddings as float32 ``(n, dim)``."""
        keys = sorted(self._rows, key=self._rows.__getitem__)
        key_tensor = torch.frombuffer(bytearray(b"".join(keys)), dtype=torch.uint8)
        assert self._buffer is not None
        return key_tensor.reshape(len(keys), 32), self._buffer[: len(keys)].clone()


class EmbeddingCache:
    """The embeddings of every side an estimator embeds, and their safetensors file.

    Args:
        sides: the sides kept (e.g. ``("query", "code")``); each gets its own store.
    """

    def __init__(self, sides: Sequence[str]) -> None:
        self.sides = tuple(sides)
        self._stores = {side: EmbeddingStore() for side in self.sides}

    def store(self, side: str) -> EmbeddingStore:
        """The store of ``side``."""
        if side not in self._stores:
            raise ValueError(f"side must be one of {self.sides}, got {side!r}")
        return self._stores[side]

    def size(self) -> dict[str, int]:
        """The number of cached embeddings per side."""
        return {side: len(store) for side, store in self._stores.items()}

    def clear(self) -> None:
        """Forget every cached embedding."""
        self._stores = {side: EmbeddingStore() for side in self.sides}

    def lookup(
        self, texts: Sequence[str], side: str, encode: Encode, batch_size: int
    ) -> torch.Tensor:
        """``[len(texts), dim]`` embeddings, encoding (once) the texts not yet cached."""
        store = self.store(side)
        keys = [text_key(text) for text in texts]
        rows = store.rows(keys)
        if None in rows:
            missing = [i for i, row in enumerate(rows) if row is None]
            self._fill(
                store,
                [texts[i] for i in missing],
                [keys[i] for i in missing],
                side,
                encode,
                batch_size,
                show_progress=False,
            )
            rows = store.rows(keys)
        return store.gather(rows)  # type: ignore[arg-type]

    def precompute(
        self,
        texts: Sequence[str],
        side: str,
        encode: Encode,
        batch_size: int,
        show_progress: bool = True,
    ) -> int:
        """Encode the not yet cached ``texts``, longest first; returns how many were encoded."""
        store = self.store(side)
        texts = check_texts("texts", texts)
        check_int("batch_size", batch_size)
        keys = [text_key(text) for text in texts]
        return self._fill(store, texts, keys, side, encode, batch_size, show_progress)

    @staticmethod
    def _fill(
        store: EmbeddingStore,
        texts: list[str],
        keys: list[bytes],
        side: str,
        encode: Encode,
        batch_size: int,
        show_progress: bool,
    ) -> int:
        unique = list({key: text for key, text in zip(keys, texts) if key not in store}.items())
        unique.sort(key=lambda item: len(item[1]), reverse=True)  # similar lengths pad less
        starts = range(0, len(unique), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"Embedding {side} texts", unit="batch")
        for start in starts:
            chunk = unique[start : start + batch_size]
            with torch.no_grad():
                embeddings = encode([text for _, text in chunk])
            store.add([key for key, _ in chunk], embeddings)
        return len(unique)

    def save(self, path: str | os.PathLike[str], *, model: str, identity: str) -> None:
        """Write the non-empty sides to one safetensors file (atomically, via a temporary file).

        Args:
            path: the file to write.
            model: a label for the file (the model's name or path).
            identity: what a reader must match: weights and settings (see ``load``).
        """
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        metadata = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "model": model,
            "identity": identity,
        }
        sides = []
        for side, store in self._stores.items():
            if len(store) == 0:
                continue
            tensors[f"{side}.keys"], tensors[f"{side}.embeddings"] = store.tensors()
            metadata[f"dim.{side}"] = str(store.dim)
            sides.append(side)
        metadata["sides"] = json.dumps(sides)
        metadata["checksum"] = payload_checksum(tensors)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike[str], *, model: str, identity: str) -> int:
        """Add the embeddings of a file from :meth:`save` written for the same ``identity``.

        A file of another identity (other weights or settings), a damaged file or one whose
        payload does not match its checksum is ignored with a warning: nothing is added and
        the embeddings are recomputed as needed, never silently wrong.

        Returns:
            The number of embeddings read (0 when the file was ignored).

        Raises:
            FileNotFoundError: when ``path`` does not exist.
        """
        loaded = _read(Path(path), model=model, identity=identity)
        count = 0
        for side, (keys, embeddings) in (loaded or {}).items():
            if side in self._stores:
                raw = keys.numpy().tobytes()
                self._stores[side].add(
                    [raw[i : i + 32] for i in range(0, len(raw), 32)], embeddings
                )
                count += len(embeddings)
        return count


def _read(
    path: Path, *, model: str, identity: str
) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"embedding cache file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
                raise ValueError(
                    f"not a {CACHE_FORMAT} v{CACHE_VERSION} file (format "
                    f"{meta.get('format')!r}, version {meta.get('version')!r})"
                )
            if meta.get("identity") != identity:
                warnings.warn(
                    f"embedding cache {str(path)!r} was written for model {meta.get('model')!r} "
                    f"(identity {meta.get('identity')}), but this estimator's model {model!r} "
                    f"has other weights or settings (identity {identity}); ignoring the file "
                    "and recomputing the embeddings.",
                    UserWarning,
                    stacklevel=4,
                )
                return None
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        checksum = payload_checksum(tensors)
        if checksum != meta.get("checksum"):
            raise ValueError(
                f"the payload's checksum {checksum} differs from the stored "
                f"{meta.get('checksum')}: the file was modified or damaged after it was written"
            )
        loaded = {}
        for side in json.loads(meta["sides"]):
            keys, embeddings = tensors[f"{side}.keys"], tensors[f"{side}.embeddings"]
            dim = int(meta[f"dim.{side}"])
            if (
                keys.dtype != torch.uint8
                or keys.ndim != 2
                or keys.shape[1] != 32
                or embeddings.dtype != torch.float32
                or tuple(embeddings.shape) != (keys.shape[0], dim)
                or not torch.isfinite(embeddings).all()
            ):
                raise ValueError(
                    f"side {side!r}: keys {tuple(keys.shape)} and embeddings "
                    f"{tuple(embeddings.shape)} do not agree with dim {dim}"
                )
            loaded[side] = (keys, embeddings)
        return loaded
    except Exception as error:  # safetensors raises its own error type for damaged files
        warnings.warn(
            f"embedding cache {str(path)!r} could not be read ({type(error).__name__}: {error}); "
            "ignoring it and recomputing the embeddings.",
            UserWarning,
            stacklevel=4,
        )
        return None
