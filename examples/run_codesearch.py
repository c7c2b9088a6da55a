"""Fine-tune a code-search bi-encoder with Soft-InfoNCE and compare it with InfoNCE.

With no arguments this runs the embedded offline default (about 10 minutes on 2 CPU cores):
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
curves) and ``<output_dir>/weights.png`` (the estimated weights of the negatives, Fig. 2).

Interrupted? Rerun the same command with ``--resume_from_checkpoint``: every run continues from
its last *complete* checkpoint (one killed half-way through its write is set aside); a run that
finished (in ``results.json``, with its best model saved) is kept, not trained again.
``--resume_from_checkpoint <path>`` names the checkpoint of one run::

    python examples/run_codesearch.py --resume_from_checkpoint
"""

# Over 300 lines for a reason: the three argument dataclasses are the command's reference
# (``--help``). Checks, resume and result files live beside it in codesearch_checks.py.

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub model is only fetched when asked
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import HfArgumentParser, IntervalStrategy, set_seed  # noqa: E402
from transformers.trainer_utils import SaveStrategy  # noqa: E402

import soft_infonce  # noqa: E402
from soft_infonce import SoftInfoNCELoss  # noqa: E402
from soft_infonce import data as D  # noqa: E402
from soft_infonce.modeling import BiEncoder  # noqa: E402
from soft_infonce.multiprocess import evaluate_retrieval_sharded  # noqa: E402
from soft_infonce.trainer import (  # noqa: E402
    SoftInfoNCETrainer,
    SoftInfoNCETrainingArguments,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # codesearch_checks beside this file
from codesearch_checks import (  # noqa: E402
    RESUME_LAST,
    bare_resume_flag,
    check_config_types,
    check_sizes,
    default_model_path,
    finished_runs,
    parse_runs,  # noqa: F401  (part of this script's interface: tests/test_configs.py)
    plan_runs,
    plot_results,
    print_table,
    read_config,
    resume_point,
    write_results,
)

logger = logging.getLogger("run_codesearch")


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
    runs: str = field(
        default="infonce,soft:bm25",
        metadata={
            "help": "Comma-separated loss[:estimator] runs to compare, e.g. infonce,soft:bm25."
        },
    )


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


def parse_args(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, CodeSearchTrainingArguments]:
    """Command line, or a JSON/YAML config file followed by command-line overrides."""
    parser = HfArgumentParser((ModelArguments, DataArguments, CodeSearchTrainingArguments))
    argv = bare_resume_flag(sys.argv[1:] if argv is None else argv)
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
    return parser.parse_args_into_dataclasses(args=argv)


def load_data(
    data_args: DataArguments, seed: int, use_tokens: bool = True
) -> tuple[Any, D.RetrievalSet, dict]:
    """Training pairs, the validation retrieval set and the test retrieval sets.

    ``use_tokens=False`` keeps the code's source text (GraphCodeBERT parses it)."""
    if data_args.data_dir:
        root = data_args.data_dir
        train = D.load_codesearchnet(root, "train", use_tokens=use_tokens)
        valid = D.load_codesearchnet_retrieval(root, "valid", use_tokens=use_tokens)
        tests = {"test": D.load_codesearchnet_retrieval(root, "test", use_tokens=use_tokens)}
    else:
        if data_args.code_text_file:
            pairs = D.load_code_text(data_args.code_text_file, use_tokens=use_tokens)
            pairs = pairs.shuffle(seed=seed)
            n = len(pairs)
            n_test = min(data_args.max_test_pairs, n // 5)
            splits = {
                "test": pairs.select(range(n_test)),
                "valid": pairs.select(
                    range(n_test, n_test + min(data_args.max_valid_pairs, n // 10))
                ),
                "train": pairs.select(range(n_test + min(data_args.max_valid_pairs, n // 10), n)),
            }
        else:
            splits = D.mine_pairs(D.default_corpus(), seed=seed)
        train = splits["train"]
        valid_pairs = splits["valid"].shuffle(seed=seed)
        valid_pairs = valid_pairs.select(range(min(data_args.max_valid_pairs, len(valid_pairs))))
        test_pairs = splits["test"].shuffle(seed=seed)
        test_pairs = test_pairs.select(range(min(data_args.max_test_pairs, len(test_pairs))))
        valid = D.pairs_to_retrieval_set(valid_pairs, name="valid")
        tests = {"test": D.pairs_to_retrieval_set(test_pairs, name="test")}
    if data_args.cosqa_dir:
        cosqa = Path(data_args.cosqa_dir)
        tests["cosqa"] = D.load_cosqa_retrieval(
            cosqa / "cosqa-retrieval-dev-500.json", cosqa / "code_idx_map.txt"
        )
    if data_args.max_train_pairs is not None:
        train = train.shuffle(seed=seed).select(range(min(data_args.max_train_pairs, len(train))))
    return train, valid, tests


def evaluate_all(model: BiEncoder, sets: dict, args: CodeSearchTrainingArguments) -> dict:
    """Every test set; with several processes each encodes its share (call it on all)."""
    return {
        name: evaluate_retrieval_sharded(
            model,
            s.queries,
            s.codes,
            s.relevant,
            batch_size=args.per_device_eval_batch_size,
            max_query_length=args.max_query_length,
            max_code_length=args.max_code_length,
            show_progress=not args.disable_tqdm and args.process_index == 0,
        )
        for name, s in sets.items()
    }


def load_model(model_args: ModelArguments) -> BiEncoder:
    path = model_args.model_name_or_path or default_model_path()
    return BiEncoder.from_pretrained(
        path,
        local_files_only=not model_args.allow_download,
        pooling=model_args.pooling,
        normalize=model_args.normalize,
        scale=model_args.model_scale,
        input_layout=model_args.input_layout,
        language=model_args.language,
        data_flow_length=model_args.data_flow_length,
    )


def sample_weights(train, loss_fn, batch_size: int, n_batches: int = 4):
    """The estimated negative weights of a few training batches (the paper's Fig. 2), from the
    trained run's own loss and estimator (its caches are warm)."""
    if not isinstance(loss_fn, SoftInfoNCELoss) or loss_fn.estimator is None:
        return None
    chunks = []
    for b in range(min(n_batches, len(train) // batch_size)):
        rows = train[b * batch_size : (b + 1) * batch_size]
        w = loss_fn.weights(loss_fn.estimator(rows["query"], rows["code"], rows["query"]))
        chunks.append(w[~torch.eye(len(w), dtype=torch.bool)])
    return torch.cat(chunks) if chunks else None


def describe(model_args, data_args, args, train, valid, tests) -> dict[str, Any]:
    """The parts of ``results.json`` known before training."""
    return {
        "config": {
            "model": asdict(model_args),
            "data": asdict(data_args),
            "training": args.to_dict(),
        },
        "seed": args.seed,
        "data_sizes": {
            "train": len(train),
            "valid": len(valid.queries),
            **{k: [len(v.queries), len(v.codes)] for k, v in tests.items()},
        },
        "versions": {
            "soft_infonce": soft_infonce.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "transformers": __import__("transformers").__version__,
        },
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
    }


def main(argv: list[str] | None = None) -> None:
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if training_args.should_log else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    started = time.time()
    planned = plan_runs(model_args, data_args, training_args)
    set_seed(training_args.seed)
    train, valid, tests = load_data(
        data_args, training_args.seed, use_tokens=model_args.input_layout != "graphcodebert"
    )
    check_sizes(train, training_args)
    logger.info(
        "train pairs %d, valid queries %d, test sets %s",
        len(train),
        len(valid.queries),
        {k: (len(v.queries), len(v.codes)) for k, v in tests.items()},
    )
    out_dir = Path(training_args.output_dir)
    main_process = training_args.process_index == 0
    results: dict[str, Any] = {}
    weights: dict[str, torch.Tensor] = {}
    payload = describe(model_args, data_args, training_args, train, valid, tests)
    payload["runs"] = results

    t0 = time.time()
    results["zero-shot"] = {
        "test": evaluate_all(load_model(model_args), tests, training_args),
        "eval_seconds": time.time() - t0,
    }
    resuming = training_args.resume_from_checkpoint
    finished = finished_runs(out_dir, payload["config"]) if resuming else {}
    for run, run_args in planned:
        if main_process:  # what finished so far survives a crash of this run
            write_results(out_dir, payload | {"wall_seconds": time.time() - started})
        named = resuming not in (None, *RESUME_LAST) and (
            len(planned) == 1 or Path(resuming).resolve().parent == run.output_dir.resolve()
        )
        if run.name in finished and not named:
            logger.info("%s finished in a previous invocation: its results are kept", run.name)
            results[run.name] = finished[run.name] | {"reused": True}
            continue
        checkpoint = resume_point(run_args, run, len(planned))
        set_seed(run_args.seed)
        trainer = SoftInfoNCETrainer(
            load_model(model_args), run_args, train_dataset=train, eval_dataset=valid
        )
        t0 = time.time()
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        train_seconds = time.time() - t0
        t0 = time.time()
        test_metrics = evaluate_all(trainer.model, tests, run_args)
        best = run.output_dir / "best"
        if trainer.is_world_process_zero():
            trainer.model.save_pretrained(best)
        trainer.accelerator.wait_for_everyone()  # a later run's estimator may load it
        batch = run_args.per_device_train_batch_size
        sampled = sample_weights(train, trainer.loss_fn, batch) if main_process else None
        if sampled is not None:
            weights[run.name] = sampled
        results[run.name] = {
            "loss": trainer.loss_fn.get_config_dict() | {"name": run.loss},
            "test": test_metrics,
            "best_valid_mrr": trainer.state.best_metric,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "saved_model": str(best),
            "resumed_from": checkpoint,
            "train_seconds": train_seconds,
            "eval_seconds": time.time() - t0,
            "train_loss": train_result.training_loss,
            "history": trainer.state.log_history,
        }
    if not main_process:
        return
    payload["wall_seconds"] = time.time() - started
    write_results(out_dir, payload)
    print_table(results, list(tests))
    plot_results(out_dir, payload, weights)
    print(f"\nwall time {payload['wall_seconds']:.0f} s; results in {out_dir / 'results.json'}")


if __name__ == "__main__":
    main()
