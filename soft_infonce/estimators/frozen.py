"""Estimators built on a frozen neural encoder: freezing, device placement, embedding cache.

:class:`FrozenEncoderEstimator` is the base of ``EmbeddingEstimator`` and
``TrainedModelEstimator`` (and of your own encoder-based estimators). It freezes its model
explicitly when the model is assigned, and holds an
:class:`~soft_infonce.estimators.cache.EmbeddingCache` so each distinct text is encoded once.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from soft_infonce.checks import check_flag, check_int
from soft_infonce.estimators.base import WeightEstimator
from soft_infonce.estimators.cache import EmbeddingCache

__all__ = ["FrozenEncoderEstimator", "freeze", "module_fingerprint"]


def _eval_only_train(module: nn.Module, mode: bool = True) -> nn.Module:
    """Replacement ``train`` for frozen modules: any ``train(mode)`` leaves them in eval mode."""
    return nn.Module.train(module, False)


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode, turn off its gradients, and keep it so under ``.train()``."""
    # an instance attribute shadowing the method on purpose; picklable, unlike a lambda
    module.train = functools.partial(_eval_only_train, module)  # type: ignore[method-assign]
    module.eval()
    module.requires_grad_(False)
    for parameter in module.parameters():
        parameter.grad = None  # a frozen module needs no (deep-copied) gradients
    return module


def module_fingerprint(module: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every tensor in ``module``'s state.

    Two models with the same architecture but different weights get different fingerprints,
    so a cache written by one is never used for the other.
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FrozenEncoderEstimator(WeightEstimator):
    """A :class:`WeightEstimator` whose scores come from a frozen ``torch.nn.Module``.

    The model is frozen when assigned (eval mode, ``requires_grad=False``, and it stays in
    eval mode when a parent module calls ``.train()``); assigning another model drops the
    cached embeddings. Subclasses implement :meth:`encode` (uncached, ``[len(texts), dim]``)
    and :meth:`similarity`, which calls :meth:`embed` (cached). :meth:`cache_config` names
    what besides the weights shapes the embeddings, so a cache file is only reused by the
    same weights and settings.

    Args:
        model: the encoder (frozen in place: pass a copy to keep the original trainable).
        embedding_sides: the sides :meth:`embed` caches, e.g. ``("query", "code")``.
        batch_size: texts per :meth:`encode` call.
        cache: keep the embedding of every text seen (keyed by its sha256).
        device: where the model runs (default: where its parameters are).
        model_name: a label for cache files (default: the class name).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        embedding_sides: Sequence[str] = ("query", "code"),
        batch_size: int = 64,
        cache: bool = True,
        device: str | torch.device | None = None,
        model_name: str | None = None,
    ) -> None:
        self.batch_size = check_int("batch_size", batch_size)
        self.use_cache = check_flag("cache", cache)
        sides = tuple(embedding_sides)
        if not sides or not all(side in ("query", "code") for side in sides):
            raise ValueError(f"embedding_sides must name 'query' and/or 'code', got {sides!r}")
        self.embedding_sides = sides
        self.model_name = type(self).__name__ if model_name is None else str(model_name)
        self._device: torch.device | None = None
        self.model = model
        if device is not None:
            self.to(device)

    # the frozen model
    @property
    def model(self) -> nn.Module:
        """The frozen encoder; assigning a new one freezes it and drops the cache."""
        return self._model

    @model.setter
    def model(self, module: nn.Module) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(module).__name__}")
        self._model = freeze(module)
        self._parts = (list(module.modules()), list(module.parameters()))  # flat, for refreeze
        self._fingerprint: str | None = None
        self.cache = EmbeddingCache(self.embedding_sides)
        if self._device is not None:
            module.to(self._device)

    def refreeze(self) -> None:
        """Put the model back in eval mode without gradients if anything turned them on."""
        submodules, parameters = self._parts
        if any(sub.training for sub in submodules):
            self._model.eval()
        if any(p.requires_grad for p in parameters):
            self._model.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        """Where the model runs (the device given to :meth:`to`, else its parameters')."""
        if self._device is not None:
            return self._device
        for tensor in self._model.parameters():
            return tensor.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> FrozenEncoderEstimator:
        """Move the model to ``device``; returns ``self``. Cached embeddings stay on the CPU."""
        self._device = torch.device(device)
        self._model.to(self._device)
        return self

    # embeddings
    @abc.abstractmethod
    def encode(self, texts: list[str], side: str) -> torch.Tensor:
        """Embed ``texts`` of ``side`` without the cache: ``[len(texts), dim]``."""

    def cache_config(self) -> dict[str, Any]:
        """What besides the frozen weights decides the embeddings (max length, prompts, ...).

        Part of :meth:`cache_identity`; the model's name or path is not (a moved model keeps
        its cache), it only labels the file.
        """
        return {}

    def cache_identity(self) -> str:
        """The identity a cache file must match: class, :meth:`cache_config` and weights."""
        if self._fingerprint is None:
            self._fingerprint = module_fingerprint(self._model)
        blob = json.dumps(
            {
                "class": type(self).__qualname__,
                "config": self.cache_config(),
                "weights": self._fingerprint,
            },
            sort_keys=True,
            default=str,
        )
        return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()

    def _encoder(self, side: str):  # noqa: ANN202 - a closure over side
        def encode(texts: list[str]) -> torch.Tensor:
            self.refreeze()
            out = self.encode(texts, side)
            name = type(self).__name__
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"{name}.encode must return a torch.Tensor, got {type(out).__name__}"
                )
            if out.ndim != 2 or out.shape[0] != len(texts):
                raise ValueError(
                    f"{name}.encode must return a tensor of shape "
                    f"({len(texts)}, dim), got {tuple(out.shape)}"
                )
            out = out.detach().to("cpu", torch.float32)
            if not bool(torch.isfinite(out).all()):
                raise ValueError(f"{name}.encode returned non-finite embeddings")
            return out

        return encode

    def embed(self, texts: Sequence[str], side: str) -> torch.Tensor:
        """Float32 CPU embeddings ``[len(texts), dim]``, each distinct text encoded once per run."""
        self.cache.store(side)  # checks the side
        texts = list(texts)
        if not texts:
            raise ValueError("texts must hold at least one text, got an empty sequence")
        if not self.use_cache:
            with torch.no_grad():
                return self._encoder(side)(texts)
        return self.cache.lookup(texts, side, self._encoder(side), self.batch_size)

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
        if side is None:
            if len(self.embedding_sides) != 1:
                raise ValueError(
                    f"side must be one of {self.embedding_sides} for "
                    f"{type(self).__name__}, got None"
                )
            side = self.embedding_sides[0]
        self.cache.store(side)
        if not self.use_cache:
            raise ValueError(
                f"precompute needs the cache, but {type(self).__name__} was built with cache=False"
            )
        batch_size = self.batch_size if batch_size is None else batch_size
        return self.cache.precompute(texts, side, self._encoder(side), batch_size, show_progress)

    def cache_size(self) -> dict[str, int]:
        """The number of cached embeddings per side."""
        return self.cache.size()

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self.cache.clear()

    def save_cache(self, path: str | os.PathLike[str]) -> None:
        """Write the cached embeddings to a safetensors file tagged with :meth:`cache_identity`."""
        self.cache.save(path, model=self.model_name, identity=self.cache_identity())

    def load_cache(self, path: str | os.PathLike[str]) -> int:
        """Add the embeddings of a file from :meth:`save_cache` to the cache.

        A file written for another model (other weights or settings), a damaged file, or one
        whose payload fails its checksum is ignored with a warning, and the embeddings are
        recomputed as needed.

        Returns:
            The number of embeddings read (0 when the file was ignored).

        Raises:
            FileNotFoundError: when ``path`` does not exist.
        """
        return self.cache.load(path, model=self.model_name, identity=self.cache_identity())
