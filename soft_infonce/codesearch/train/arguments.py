"""The command's arguments: three dataclasses parsed by ``HfArgumentParser``, from the command
line or a JSON/YAML recipe followed by command-line overrides. ``--help`` prints them all."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, cast

from transformers import HfArgumentParser, IntervalStrategy
from transformers.trainer_utils import SaveStrategy

from soft_infonce.codesearch.data.negative_spec import HardNegativeSpec
from soft_infonce.codesearch.train.checks import (
    bare_resume_flag,
    check_config_types,
    check_loss_flags,
    parse_runs,
    read_config,
)
from soft_infonce.integrations.hf.training_args import SoftInfoNCETrainingArguments


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Encoder path (or hub name with --allow_download). "
            "Default: the offline all-MiniLM-L6-v2 of the demo extra."
        },
    )
    pooling: str = field(default="mean", metadata={"help": "cls | pooler | mean"})
    normalize: bool = field(default=True, metadata={"help": "L2-normalise embeddings (cosine)."})
    model_scale: float = field(default=20.0, metadata={"help": "Score scale (cosine x 20)."})
    input_layout: str = field(
        default="plain", metadata={"help": "plain | unixcoder | graphcodebert (data flow)"}
    )
    language: str | None = field(
        default=None, metadata={"help": "Code language, for graphcodebert's data-flow parser."}
    )
    data_flow_length: int = field(default=64, metadata={"help": "Data-flow nodes per code."})
    allow_download: bool = field(default=False, metadata={"help": "Allow hub downloads."})


@dataclass
class DataArguments:
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "CodeSearchNet in the GraphCodeBERT layout (train/valid/test/codebase.jsonl). "
            "Default: pairs mined from the Python standard library."
        },
    )
    code_text_file: str | None = field(
        default=None,
        metadata={
            "help": "A CodeXGLUE Code-Text JSON-lines file, split into train/valid/test by row."
        },
    )
    cosqa_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder with cosqa-retrieval-dev-500.json and code_idx_map.txt (a test set)."
        },
    )
    max_train_pairs: int | None = field(default=None, metadata={"help": "Cap on training pairs."})
    max_valid_pairs: int = field(
        default=300, metadata={"help": "Validation pairs (model selection)."}
    )
    max_test_pairs: int = field(default=1000, metadata={"help": "Cap on mined test pairs."})
    hard_negatives: str | None = field(
        default=None,
        metadata={
            "help": "Mine K hard negatives per training pair before training, from the training "
            "pairs' own codes: bm25:K (BM25 of the query) or dense:K (the starting model). "
            "Every run then trains on M = N (1 + K) candidates. Default: in-batch negatives."
        },
    )
    hard_negatives_relative_margin: float | None = field(
        default=None,
        metadata={
            "help": "Positive-aware filter for --hard_negatives: drop a mined candidate scoring "
            "within this fraction of the positive's score (NV-Retriever uses 0.05)."
        },
    )
    runs: str = field(
        default="infonce,soft:bm25",
        metadata={
            "help": "Comma-separated loss[:estimator] runs to compare, e.g. infonce,soft:bm25."
        },
    )

    def __post_init__(self) -> None:
        """Parse --hard_negatives once into :attr:`negatives`; a problem names the flag."""
        self.negatives: HardNegativeSpec | None = None
        if self.hard_negatives is None or self.hard_negatives.strip() in ("", "none"):
            if self.hard_negatives_relative_margin is not None:
                raise SystemExit(
                    "--hard_negatives_relative_margin filters mined negatives: it needs "
                    f"--hard_negatives, got {self.hard_negatives_relative_margin}"
                )
            return
        try:
            self.negatives = HardNegativeSpec.parse(
                self.hard_negatives, relative_margin=self.hard_negatives_relative_margin
            )
        except ValueError as error:
            flag = "--hard_negatives_" if str(error).startswith("relative_margin") else ""
            raise SystemExit(f"{flag or '--hard_negatives '}{error}") from None


@dataclass
class CodeSearchTrainingArguments(SoftInfoNCETrainingArguments):
    """The embedded default: small enough for 2 CPU cores, settings of DESIGN.md."""

    output_dir: str = field(default="outputs/codesearch")
    per_device_train_batch_size: int = field(default=32)
    per_device_eval_batch_size: int = field(default=64)
    learning_rate: float = field(default=2e-5)
    max_steps: int = field(default=60)
    warmup_steps: float = field(default=6)
    eval_strategy: IntervalStrategy | str = field(default="steps")
    eval_steps: float = field(default=20)
    save_strategy: SaveStrategy | str = field(default="steps")
    save_steps: float = field(default=20)
    save_total_limit: int = field(default=1)
    load_best_model_at_end: bool = field(default=True)
    metric_for_best_model: str = field(default="mrr")
    greater_is_better: bool = field(default=True)
    logging_steps: float = field(default=5)
    max_query_length: int = field(default=64)
    max_code_length: int = field(default=128)


DESCRIPTION = (
    "Fine-tune a code-search bi-encoder with Soft-InfoNCE and compare it with InfoNCE. With no "
    "arguments: pairs mined from the Python standard library and the offline all-MiniLM-L6-v2 "
    "(pip install 'soft-infonce[demo]'). A JSON/YAML recipe may come first; flags after it win."
)


def parse_args(
    argv: list[str] | None = None, *, prog: str | None = None
) -> tuple[ModelArguments, DataArguments, CodeSearchTrainingArguments]:
    """Parse the command line, or a JSON/YAML config file followed by command-line overrides.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).
        prog: The command's name in ``--help`` and errors (default: ``sys.argv[0]``'s name).

    Returns:
        The model, data and training arguments.
    """
    parser = HfArgumentParser(
        cast(Any, (ModelArguments, DataArguments, CodeSearchTrainingArguments)),
        prog=prog,
        description=DESCRIPTION,
    )
    argv = bare_resume_flag(sys.argv[1:] if argv is None else argv)
    config: dict[str, Any] = {}
    if argv and argv[0].endswith((".json", ".yaml", ".yml")):
        config = read_config(argv[0])
        unknown = sorted(set(config) - {action.dest for action in parser._actions})
        if unknown:
            raise SystemExit(f"{argv[0]}: keys the script does not know: {unknown}")
        check_config_types(config, parser, argv[0])
        if config.get("resume_from_checkpoint") is True:
            config["resume_from_checkpoint"] = "auto"
        elif config.get("resume_from_checkpoint") is False:
            config["resume_from_checkpoint"] = None
        parser.set_defaults(**config)  # the file's values; the command line's win
        argv = argv[1:]
    parsed = cast(
        tuple[ModelArguments, DataArguments, CodeSearchTrainingArguments],
        parser.parse_args_into_dataclasses(args=argv),
    )
    check_loss_flags(argv, config, parse_runs(parsed[1].runs))
    return parsed
