"""The ``train_loss`` a resumed run reports covers the whole run, not only its last part.

``transformers.Trainer`` reports the mean loss of the steps run in the current ``train`` call.
Each checkpoint here also records the summed loss of every step so far (in its
``trainer_state.json``, under :data:`KEY`); a run resumed from it adds that sum and its step
count, so that the reported mean covers steps 1 .. the last one, as an uninterrupted run's.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from transformers.trainer_utils import TrainOutput

__all__ = ["KEY", "RunLoss"]

logger = logging.getLogger(__name__)

KEY = "SoftInfoNCERunLoss"


class RunLoss:
    """The summed loss and step count before this ``train`` call (0 for a fresh run)."""

    def __init__(self) -> None:
        self.loss_sum, self.step = 0.0, 0

    def start(self, checkpoint: str | None) -> None:
        """Read the sum recorded in ``checkpoint`` (``None``: a fresh run)."""
        self.loss_sum, self.step = 0.0, 0
        if checkpoint is None:
            return
        try:
            with open(os.path.join(checkpoint, "trainer_state.json"), encoding="utf-8") as handle:
                state = json.load(handle)
            recorded = state["stateful_callbacks"][KEY]["attributes"]
            self.loss_sum, self.step = float(recorded["loss_sum"]), int(recorded["step"])
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning(
                "%s records no training loss so far: the reported train_loss covers only the "
                "steps run after resuming from it", checkpoint,
            )  # fmt: skip

    def record(self, trainer: Any) -> None:
        """Keep the summed loss of every step so far in the state a checkpoint saves."""
        since = getattr(trainer, "_total_loss_scalar", None)
        pending = getattr(trainer, "_tr_loss", None)
        if since is None or pending is None:  # a transformers without these counters
            return
        total = self.loss_sum + since + float(pending)  # one host sync, per checkpoint
        trainer.state.stateful_callbacks[KEY] = {
            "args": {}, "attributes": {"loss_sum": total, "step": trainer.state.global_step},
        }  # fmt: skip

    def finish(self, trainer: Any, output: TrainOutput) -> TrainOutput:
        """``output`` with ``training_loss`` (and the logged ``train_loss``) over the whole run."""
        if self.step == 0:
            return output
        steps = trainer.state.global_step - self.step
        mean = (self.loss_sum + output.training_loss * steps) / max(trainer.state.global_step, 1)
        metrics = {**output.metrics, "train_loss": mean}
        for entry in reversed(trainer.state.log_history):
            if "train_loss" in entry:
                entry["train_loss"] = mean
                break
        return TrainOutput(output.global_step, mean, metrics)
