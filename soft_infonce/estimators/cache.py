"""Content-keyed embedding cache for frozen estimators, stored as safetensors.

A frozen encoder gives the same embedding for the same text for the whole run, so each
distinct text is embedded once and looked up by the sha256 of its content afterwards.
On disk a cache is one safetensors file: per side ``"<side>.keys"`` (uint8, ``[n, 32]``,
the sha256 digests) and ``"<side>.embeddings"`` (float32, ``[n, dim]``), with metadata
naming the format, the model identity and each side's embedding dimension.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

CACHE_FORMAT = "soft-infonce-embedding-cache"
CACHE_VERSION = "1"


def text_key(text: str) -> bytes:
    """The cache key of a text: the sha256 digest of its UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def module_fingerprint(modules: Iterable[torch.nn.Module]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every tensor in the modules' state.

    Two models with the same architecture but different weights get different
    fingerprints, so a cache written by one is never used for the other.
    """
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            data = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def pairwise_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` for ``a`` ``[N, dim]`` and ``b`` ``[M, dim]``.

    Small CPU products (a training batch) run in numpy on one core: on a busy machine,
    waking torch's intra-op threads for a 32 x 32 x 384 product can take tens of ms.
    """
    small = a.shape[0] * b.shape[0] * a.shape[1] <= 2**24
    numeric = a.dtype in (torch.float32, torch.float64)
    if small and numeric and a.device.type == b.device.type == "cpu":
        a_np = a.detach().contiguous().numpy()
        b_np = b.detach().to(a.dtype).contiguous().numpy()
        return torch.from_numpy(np.einsum("id,jd->ij", a_np, b_np))
    return a @ b.T


class EmbeddingCache:
    """In-memory embeddings of one side (``"query"`` or ``"code"``), keyed by text content.

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
        """The embedding dimension, or ``None`` while the cache is empty."""
        return None if self._buffer is None else self._buffer.shape[1]

    def add(self, keys: Sequence[bytes], embeddings: torch.Tensor) -> None:
        """Store ``embeddings[i]`` under ``keys[i]``; existing keys are left as they are."""
        embeddings = embeddings.detach().to("cpu", torch.float32)
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
        """The row of each key, ``None`` where the key is not cached."""
        return [self._rows.get(key) for key in keys]

    def gather(self, rows: Sequence[int]) -> torch.Tensor:
        """The embeddings at ``rows`` as a new ``(len(rows), dim)`` tensor."""
        assert self._buffer is not None, "gather on an empty cache"
        return self._buffer.index_select(0, torch.as_tensor(rows, dtype=torch.long))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys as uint8 ``(n, 32)`` and the embeddings as float32 ``(n, dim)``."""
        keys = sorted(self._rows, key=self._rows.__getitem__)
        key_tensor = torch.frombuffer(bytearray(b"".join(keys)), dtype=torch.uint8)
        assert self._buffer is not None
        return key_tensor.reshape(len(keys), 32), self._buffer[: len(keys)].clone()


def save_caches(
    path: str | os.PathLike[str], caches: dict[str, EmbeddingCache], model: str, identity: str
) -> None:
    """Write the non-empty caches to one safetensors file (atomically, via a temporary file)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    metadata = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "model": model,
        "identity": identity,
    }
    sides = []
    for side, cache in caches.items():
        if len(cache) == 0:
            continue
        keys, embeddings = cache.tensors()
        tensors[f"{side}.keys"], tensors[f"{side}.embeddings"] = keys, embeddings
        metadata[f"dim.{side}"] = str(embeddings.shape[1])
        sides.append(side)
    metadata["sides"] = json.dumps(sides)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_caches(
    path: str | os.PathLike[str], model: str, identity: str, sides: Sequence[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """Read a cache file written by :func:`save_caches` for the same model.

    Returns:
        ``{side: (keys, embeddings)}``, or ``None`` after a warning when the file belongs to
        another model or is damaged (the caller then recomputes; never silently wrong).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embedding cache file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
                raise ValueError(f"not a {CACHE_FORMAT} v{CACHE_VERSION} file (metadata {meta!r})")
            if meta.get("identity") != identity:
                warnings.warn(
                    f"embedding cache {str(path)!r} was written for model {meta.get('model')!r} "
                    f"(identity {meta.get('identity')}), but this estimator's model {model!r} "
                    f"has other weights or settings (identity {identity}); ignoring the file "
                    "and recomputing the embeddings.",
                    UserWarning,
                    stacklevel=3,
                )
                return None
            loaded = {}
            for side in json.loads(meta["sides"]):
                if side not in sides:
                    continue
                keys = handle.get_tensor(f"{side}.keys")
                embeddings = handle.get_tensor(f"{side}.embeddings")
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
            stacklevel=3,
        )
        return None


class CachedEmbeddingsMixin:
    """The embedding cache of :class:`~soft_infonce.estimators.WeightEstimator`.

    An estimator built on a frozen encoder lists the sides it embeds in ``embedding_sides``,
    implements :meth:`encode` (uncached) and calls :meth:`embed` (cached) in ``similarity``.
    """

    embedding_sides: tuple[str, ...] = ()
    batch_size: int = 64
    use_cache: bool = True

    def _ensure_frozen(self) -> None:  # provided by WeightEstimator
        pass

    def encode(self, texts: list[str], side: str) -> torch.Tensor:
        """Embed ``texts`` of ``side`` without the cache: ``[len(texts), dim]`` (override it)."""
        raise NotImplementedError(f"{type(self).__name__} does not embed texts (no encode method)")

    def cache_config(self) -> dict[str, Any]:
        """What besides the frozen weights decides the embeddings (max length, prompts, ...).

        Part of :meth:`cache_identity`; the model's name or path is not (a moved model keeps
        its cache), it only labels the file (the ``model_name`` attribute).
        """
        return {}

    def cache_identity(self) -> str:
        """The model identity a cache file must match: class, :meth:`cache_config`, weights."""
        if "_fingerprint" not in self.__dict__:
            modules = self.__dict__.get("_frozen_modules", {})
            self.__dict__["_fingerprint"] = module_fingerprint(modules[k] for k in sorted(modules))
        blob = json.dumps(
            {
                "class": type(self).__qualname__,
                "config": self.cache_config(),
                "weights": self.__dict__["_fingerprint"],
            },
            sort_keys=True,
            default=str,
        )
        return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()

    def _side_cache(self, side: str) -> EmbeddingCache:
        if not self.embedding_sides:
            raise ValueError(f"{type(self).__name__} embeds no texts: it has no embedding cache")
        if side not in self.embedding_sides:
            raise ValueError(
                f"side must be one of {self.embedding_sides} for "
                f"{type(self).__name__}, got {side!r}"
            )
        return self.__dict__.setdefault("_caches", {}).setdefault(side, EmbeddingCache())

    def embed(self, texts: Sequence[str], side: str) -> torch.Tensor:
        """Float32 CPU embeddings ``[len(texts), dim]``, each distinct text encoded once per run."""
        cache = self._side_cache(side)
        texts = list(texts)
        if not texts:
            raise ValueError("texts must hold at least one text, got an empty sequence")
        if not self.use_cache:
            return self._encode_checked(texts, side)
        keys = [text_key(text) for text in texts]
        rows = cache.rows(keys)
        if None in rows:
            missing = [i for i, row in enumerate(rows) if row is None]
            self._fill(
                cache,
                [texts[i] for i in missing],
                [keys[i] for i in missing],
                side,
                self.batch_size,
                show_progress=False,
            )
            rows = cache.rows(keys)
        return cache.gather(rows)

    def _encode_checked(self, texts: list[str], side: str) -> torch.Tensor:
        out = self.encode(texts, side)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(texts):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"{type(self).__name__}.encode must return a tensor of shape "
                f"({len(texts)}, dim), got {shape}"
            )
        out = out.detach().to("cpu", torch.float32)
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"{type(self).__name__}.encode returned non-finite embeddings")
        return out

    def _fill(
        self,
        cache: EmbeddingCache,
        texts: list[str],
        keys: list[bytes],
        side: str,
        batch_size: int,
        show_progress: bool,
    ) -> int:
        unique = list({key: text for key, text in zip(keys, texts) if key not in cache}.items())
        unique.sort(key=lambda item: len(item[1]), reverse=True)  # similar lengths pad less
        starts = range(0, len(unique), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"Embedding {side} texts", unit="batch")
        for start in starts:
            chunk = unique[start : start + batch_size]
            with torch.no_grad():
                embeddings = self._encode_checked([text for _, text in chunk], side)
            cache.add([key for key, _ in chunk], embeddings)
        return len(unique)

    def precompute(
        self,
        texts: Sequence[str],
        side: str | None = None,
        batch_size: int | None = None,
        show_progress: bool = True,
    ) -> int:
        """Embed the not yet cached ``texts`` ahead of training, longest first, with a progress bar.

        Args:
            texts: e.g. all training queries (or codes).
            side: ``"query"`` or ``"code"``; may be left out when the estimator embeds one side.
            batch_size: texts per encoder call (default: the estimator's ``batch_size``).
            show_progress: show a tqdm progress bar.

        Returns:
            How many texts were embedded (0 when all were cached).
        """
        if side is None and self.embedding_sides:
            if len(self.embedding_sides) != 1:
                raise ValueError(
                    f"side must be one of {self.embedding_sides} for "
                    f"{type(self).__name__}, got None"
                )
            side = self.embedding_sides[0]
        from soft_infonce.estimators.base import check_texts

        cache = self._side_cache(side)
        texts = check_texts("texts", texts)
        batch_size = self.batch_size if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not self.use_cache:
            raise ValueError(
                f"precompute needs the cache, but {type(self).__name__} was built with cache=False"
            )
        self._ensure_frozen()
        return self._fill(
            cache, texts, [text_key(t) for t in texts], side, batch_size, show_progress
        )

    def cache_size(self) -> dict[str, int]:
        """The number of cached embeddings per side."""
        return {side: len(self._side_cache(side)) for side in self.embedding_sides}

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self.__dict__["_caches"] = {}

    def save_cache(self, path: str | os.PathLike[str]) -> None:
        """Write the cached embeddings to a safetensors file tagged with :meth:`cache_identity`."""
        caches = {side: self._side_cache(side) for side in self.embedding_sides}
        if not caches:
            raise ValueError(f"{type(self).__name__} has no embedding cache to save")
        model = str(getattr(self, "model_name", type(self).__name__))
        save_caches(path, caches, model=model, identity=self.cache_identity())

    def load_cache(self, path: str | os.PathLike[str]) -> int:
        """Add the embeddings of a file from :meth:`save_cache` to the cache.

        A file written for another model (other weights or settings) or a damaged file is
        ignored with a warning, and the embeddings are recomputed as needed.

        Returns:
            The number of embeddings read (0 when the file was ignored).

        Raises:
            FileNotFoundError: when ``path`` does not exist.
        """
        caches = {side: self._side_cache(side) for side in self.embedding_sides}
        if not caches:
            raise ValueError(f"{type(self).__name__} has no embedding cache to load into")
        model = str(getattr(self, "model_name", type(self).__name__))
        loaded = load_caches(path, model=model, identity=self.cache_identity(), sides=list(caches))
        count = 0
        for side, (keys, embeddings) in (loaded or {}).items():
            raw = keys.numpy().tobytes()
            caches[side].add([raw[i : i + 32] for i in range(0, len(raw), 32)], embeddings)
            count += len(embeddings)
        return count
