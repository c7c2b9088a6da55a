"""What a multi-process run needs beyond the loss's gathers (:mod:`soft_infonce.distributed`).

- :func:`check_launch`: a launcher started several processes but the arguments did not set up
  a process group (``torchrun`` on CPU without ``--use_cpu true``): an error that says how to
  fix it, instead of ``W`` independent copies that each train on all the data and write the
  same files.
- :func:`reduce_statistics`: the loss's weight statistics averaged over the processes (min
  and max taken over them), at log time only.
- :func:`evaluate_retrieval_sharded`: every process encodes its share of the queries and of
  the code base (accelerate's ``split_between_processes``); the code embeddings and the ranks
  are gathered, so each process reports the metrics of the whole set (the same numbers as one
  process) at ``1 / W`` of the encoding.

Every function is the plain single-process computation when no process group is initialised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from accelerate import PartialState  # type: ignore[import-untyped]
from accelerate.utils import (  # type: ignore[import-untyped]
    gather,
    gather_object,
    pad_across_processes,
)

from soft_infonce.distributed import rank, world_size

if TYPE_CHECKING:
    from soft_infonce.integrations.hf.modeling import BiEncoder

__all__ = [
    "check_launch",
    "evaluate_retrieval_sharded",
    "gather_rows",
    "launched_world_size",
    "reduce_statistics",
]

logger = logging.getLogger(__name__)

# The variables a launcher sets to the number of processes it started: torchrun / accelerate
# (WORLD_SIZE), Intel MPI / MPICH (PMI_SIZE), Open MPI, MVAPICH2.
_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_FIX = (
    "On CPU pass --use_cpu true (SoftInfoNCETrainingArguments(use_cpu=True)), so that the "
    "Trainer initialises a gloo process group: torchrun --nproc_per_node 2 "
    "examples/run_codesearch.py ... --use_cpu true. On GPUs check that every process sees a "
    "GPU (CUDA_VISIBLE_DEVICES). Or call torch.distributed.init_process_group before building "
    "the arguments. See docs/distributed.md."
)


def launched_world_size() -> int:
    """The number of processes a launcher says it started (1 when none did)."""
    for name in _WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                raise ValueError(
                    f"environment variable {name} must be an int, got {value!r}"
                ) from None
    return 1


def check_launch(trainer_world_size: int) -> None:
    """Refuse a launch whose processes would not train together.

    Args:
        trainer_world_size: the processes the training arguments set up
            (``TrainingArguments.world_size``).

    Raises:
        RuntimeError: the launcher started ``W > 1`` processes (``WORLD_SIZE``) but no
            process group covers them (``torchrun`` without ``--use_cpu true`` on a machine
            without GPUs): every process would train alone on all the data.
    """
    launched = launched_world_size()
    if launched > 1 and (trainer_world_size != launched or world_size() != launched):
        state = (
            "not initialised"
            if world_size() == 1 and not (dist.is_available() and dist.is_initialized())
            else f"initialised with {world_size()} process(es) while the Trainer uses "
            f"{trainer_world_size}"
        )
        raise RuntimeError(
            f"A launcher started {launched} processes (WORLD_SIZE={launched}) but "
            f"torch.distributed is {state}: each process would train alone on all the data "
            f"and write the same outputs. {_FIX}"
        )
    # accelerate's simple launcher runs ONE process for --num_processes N --cpu (or N > the
    # GPUs it found); it sets MASTER_PORT only when asked for more than one process.
    if (
        launched == 1
        and trainer_world_size == 1
        and "ACCELERATE_DYNAMO_BACKEND" in os.environ
        and "MASTER_PORT" in os.environ
    ):
        logger.warning(
            "accelerate launch asked for several processes but started one: this run is not "
            "distributed. On CPU use `accelerate launch --multi_gpu --num_processes N ... "
            "--use_cpu true` or `torchrun --nproc_per_node N ... --use_cpu true` "
            "(docs/distributed.md)."
        )


def reduce_statistics(statistics: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average statistics over the processes; keys ending in ``_min``/``_max`` take the
    minimum/maximum. One ``accelerate.utils.gather`` of the stacked values (and one object
    gather of the keys) on the statistics' device; call it at log time, on every process.

    Args:
        statistics: 0-d tensors (sums or means: the mean over processes is taken).

    Returns:
        The reduced statistics (the input as a dict with one process).

    Raises:
        ValueError: the processes hold different keys (on every process, instead of a hang).
    """
    if world_size() == 1 or not statistics:
        return dict(statistics)
    keys = sorted(statistics)
    everyone = gather_object([keys])
    if any(k != keys for k in everyone):
        raise ValueError(f"statistics must have the same keys on every process, got {everyone}")
    values = torch.stack([statistics[k].detach().float().reshape(()) for k in keys])
    table = gather(values[None])  # (world, len(keys))
    out: dict[str, torch.Tensor] = {}
    for key, column in zip(keys, table.unbind(1)):
        if key.endswith("_min"):
            out[key] = column.min()
        elif key.endswith("_max"):
            out[key] = column.max()
        else:
            out[key] = column.mean()
    return out


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The rows every process holds, concatenated in rank order (shares may differ in size,
    as ``split_between_processes`` makes them): padded, gathered, trimmed. No gradient."""
    if world_size() == 1:
        return tensor
    sizes = gather_object([tensor.shape[0]])
    padded = pad_across_processes(tensor, dim=0)
    table = gather(padded)  # (world * most rows, ...)
    step = padded.shape[0]
    return torch.cat([table[r * step : r * step + size] for r, size in enumerate(sizes)])


def evaluate_retrieval_sharded(
    model: BiEncoder,
    queries: Sequence[str],
    codes: Sequence[str],
    relevant: Sequence[int] | torch.Tensor,
    **kwargs: Any,
) -> dict[str, float]:
    """:func:`~soft_infonce.integrations.hf.evaluation.evaluate_retrieval` with the encoding
    split over the processes.

    Each process encodes its share of the queries and of the codes
    (``PartialState().split_between_processes``); the code embeddings are gathered, each
    process ranks its own queries against the whole code base with
    :func:`~soft_infonce.metrics.target_ranks`, and the ranks are gathered, so every process
    returns the metrics of all the queries. Call it on every process.

    Args:
        model: the bi-encoder (the same weights on every process).
        queries: the query texts, as for ``evaluate_retrieval``.
        codes: the code base.
        relevant: the index in ``codes`` of each query's true code.
        **kwargs: ``batch_size``, ``max_query_length``, ``max_code_length``, ``cutoff``,
            ``show_progress``.

    Returns:
        ``{"mrr", "recall@1", "recall@5", "recall@10", "num_queries"}``.
    """
    from soft_infonce.integrations.hf.evaluation import evaluate_retrieval
    from soft_infonce.metrics import retrieval_metrics, target_ranks

    if world_size() == 1:
        return evaluate_retrieval(model, queries, codes, relevant, **kwargs)
    if len(relevant) != len(queries) or not queries or not codes:
        raise ValueError(
            "queries and codes must be non-empty with one relevant code per query, got "
            f"{len(queries)} queries, {len(codes)} codes, {len(relevant)} relevant"
        )
    cutoff = kwargs.pop("cutoff", None)
    encode = {
        "batch_size": kwargs.pop("batch_size", 64),
        "show_progress": kwargs.pop("show_progress", False) and rank() == 0,
    }
    query_length = kwargs.pop("max_query_length", 128)
    code_length = kwargs.pop("max_code_length", 256)
    if kwargs:
        raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
    device = getattr(model, "device", torch.device("cpu"))
    state = PartialState()
    pairs = list(zip(queries, torch.as_tensor(relevant).long().tolist()))
    with state.split_between_processes(pairs) as my_pairs:
        targets = torch.tensor([target for _, target in my_pairs], dtype=torch.long)
        my_queries = [query for query, _ in my_pairs]
        q = (
            model.encode_texts(my_queries, side="query", max_length=query_length, **encode)
            if my_queries
            else None
        )
    with state.split_between_processes(list(codes)) as my_codes:
        c = model.encode_texts(my_codes, side="code", max_length=code_length, **encode)
    all_codes = gather_rows(c.to(device))  # (n_codes, H), in the input order
    ranks = (
        target_ranks(q.to(device), all_codes, targets, cutoff=cutoff, scale=model.scale)
        if q is not None
        else torch.empty(0, dtype=torch.long, device=device)
    )
    return retrieval_metrics(gather_rows(ranks).cpu(), cutoff=cutoff)
