"""Per-step clocks of ``gpu_check.py``: wall time, peak GPU memory and host syncs."""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any

import torch
from transformers import TrainerCallback

# (``numpy()`` is left out: it refuses CUDA tensors, so it never syncs)
_CONVERSIONS = ("item", "tolist", "__bool__", "__float__", "__int__")


class HostSyncCounter:
    """Counts host syncs between ``start`` and ``stop``: on CUDA the warnings of
    ``torch.cuda.set_sync_debug_mode("warn")``; on CPU, as a proxy, the tensor -> Python
    conversions (``item``, ``bool(t)``, ``tolist``, ...) that would sync on a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._record: Any = None
        self._log: list = []
        self._saved: dict[str, Any] = {}
        self._cpu_count = 0

    @property
    def active(self) -> bool:
        return self._record is not None or bool(self._saved)

    def start(self) -> None:
        self._cpu_count = 0
        if self.cuda:
            self._record = warnings.catch_warnings(record=True)
            self._log = self._record.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            return
        for name in _CONVERSIONS:
            self._saved[name] = torch.Tensor.__dict__.get(name)
            original = getattr(torch.Tensor, name)

            def counted(tensor, *a, _original=original, **k):
                self._cpu_count += 1
                return _original(tensor, *a, **k)

            setattr(torch.Tensor, name, counted)

    def peek(self) -> int:
        if self.cuda:
            return sum("synchroniz" in str(w.message) for w in self._log)
        return self._cpu_count

    def stop(self) -> int:
        count = self.peek()
        if self.cuda and self._record is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._record.__exit__(None, None, None)
            self._record = None
        for name, saved in self._saved.items():
            if saved is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, saved)
        self._saved = {}
        return count


class StepClock(TrainerCallback):
    """Per optimizer step: wall time, peak memory, host syncs (step and ``training_step``)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.counter = device, HostSyncCounter(device)
        self.records: list[dict[str, float]] = []
        self.inner = 0

    def wrap(self, trainer: Any) -> None:
        original = trainer.training_step

        def training_step(model, inputs, num_items_in_batch=None):
            before = self.counter.peek()
            try:
                return original(model, inputs, num_items_in_batch)
            finally:
                self.inner += self.counter.peek() - before

        trainer.training_step = training_step

    def on_step_begin(self, args, state, control, **kwargs):
        self.inner = 0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.counter.start()
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        syncs = self.counter.stop()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        record = {"seconds": time.perf_counter() - self.t0, "syncs": syncs, "inner": self.inner}
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            record |= {"peak_mb": peak / 2**20, "step_mb": (peak - self.base) / 2**20}
        self.records.append(record)


def summarize(records: list[dict[str, float]], device: torch.device) -> dict[str, Any]:
    """Median step time, peak memory and mean host syncs of a variant's timed steps."""
    median = statistics.median(s["seconds"] for s in records)
    cuda = device.type == "cuda"
    return {
        "timed_steps": len(records),
        "step_s": median,
        "steps_per_s": 1 / median,
        "peak_memory_mb": max(s["peak_mb"] for s in records) if cuda else None,
        "step_memory_mb": max(s["step_mb"] for s in records) if cuda else None,
        "host_syncs_train_step": statistics.mean(s["inner"] for s in records),
        "host_syncs_step": statistics.mean(s["syncs"] for s in records),
        "sync_counter": "cuda_sync_debug_mode" if cuda else "tensor_to_python (CPU proxy)",
    }
