"""A moving-average copy of the model being trained as the estimator (mean-teacher style)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

import torch
from accelerate.utils import (  # type: ignore[import-untyped]
    extract_model_from_parallel,
)
from torch import nn

from soft_infonce.checks import check_number
from soft_infonce.integrations.hf.trained_estimator import TrainedModelEstimator

if TYPE_CHECKING:  # pragma: no cover
    from soft_infonce.integrations.hf.modeling import BiEncoder


class EMAEstimator(TrainedModelEstimator):
    """Scores of an exponential moving average (EMA) of the model being trained.

    A middle way between :class:`~soft_infonce.estimators.SelfGuidedEstimator` (the model's
    own scores, free but noisy and self-confirming) and the frozen
    :class:`~soft_infonce.integrations.hf.trained_estimator.TrainedModelEstimator` (needs a
    separate InfoNCE run):
    a frozen copy of the training model whose weights follow it slowly,
    ``theta_ema <- decay * theta_ema + (1 - decay) * theta`` after every optimizer step
    (:meth:`update`, or the Trainer callback from :meth:`callback`). Scores are on the
    model's own scale (``scale * q . c``), so ``preset = "trained"``.

    Cost: one forward pass of the copy (no gradient) over the batch's N queries and M codes
    per step, since the embeddings change after each update (the cache only dedups within a
    step), plus a second copy of the weights in memory.

    Args:
        model: the :class:`~soft_infonce.integrations.hf.modeling.BiEncoder` being trained (copied).
        decay: the EMA decay in ``[0, 1)``; 0 copies the model at every update.
        similarity: ``"dot"`` or ``"cosine"``, as for ``TrainedModelEstimator``.
        max_query_length: token budget of a query.
        max_code_length: token budget of a code.
        batch_size: texts per encoder call.
        device: where the copy runs (default: where the model is).
    """

    def __init__(
        self,
        model: BiEncoder,
        decay: float = 0.999,
        similarity: Literal["dot", "cosine"] = "dot",
        max_query_length: int = 128,
        max_code_length: int = 256,
        batch_size: int = 64,
        device: str | torch.device | None = None,
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            raise TypeError("model must be the BiEncoder being trained (an instance), got a path")
        self.decay = check_number("decay", decay, low=0.0, high=1.0, high_open=True)
        super().__init__(
            model,
            similarity=similarity,
            max_query_length=max_query_length,
            max_code_length=max_code_length,
            batch_size=batch_size,
            device=device,
        )
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the copy's weights towards ``model``'s; the cached embeddings are dropped.

        Raises:
            ValueError: ``model`` does not have the copy's parameters (names and shapes).
        """
        source = dict(extract_model_from_parallel(model).named_parameters())
        target = dict(self.model.named_parameters())
        if source.keys() != target.keys() or any(
            source[k].shape != target[k].shape for k in target
        ):
            raise ValueError(
                f"model must have the parameters of the model the {type(self).__name__} was "
                f"built from ({len(target)} tensors), got {type(model).__name__} with "
                f"{len(source)} other or differently shaped tensors"
            )
        for name, ema in target.items():
            ema.lerp_(source[name].detach().to(ema.device, ema.dtype), 1.0 - self.decay)
        for name, buffer in extract_model_from_parallel(model).named_buffers():
            own = dict(self.model.named_buffers()).get(name)
            if own is not None and own.shape == buffer.shape:
                own.copy_(buffer)
        self.updates += 1
        self._fingerprint = None
        self.clear_cache()

    def callback(self) -> Any:
        """A ``transformers.TrainerCallback`` that calls :meth:`update` after every step."""
        from transformers import TrainerCallback

        estimator = self

        class EMAUpdate(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                model = kwargs.get("model")
                if model is None:
                    raise ValueError("the Trainer passed no model to the EMA callback")
                estimator.update(model)

        return EMAUpdate()
