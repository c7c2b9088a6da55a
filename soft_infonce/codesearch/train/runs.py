"""One invocation: load the data, evaluate the zero-shot encoder, train and test each run of
``--runs``, write ``results.json`` and the figures (:func:`main`)."""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import torch
from transformers import set_seed

import soft_infonce
import soft_infonce.codesearch.graphcodebert  # noqa: F401  (registers input_layout="graphcodebert")
from soft_infonce import SoftInfoNCELoss
from soft_infonce.codesearch import data as D
from soft_infonce.codesearch.train.arguments import (
    CodeSearchTrainingArguments,
    DataArguments,
    ModelArguments,
    parse_args,
)
from soft_infonce.codesearch.train.checks import (
    RESUME_LAST,
    check_sizes,
    default_model_path,
    plan_runs,
)
from soft_infonce.codesearch.train.results import (
    finished_runs,
    plot_results,
    print_next_steps,
    print_table,
    remove_checkpoints,
    resume_point,
    run_card,
    write_results,
)
from soft_infonce.integrations.hf.modeling import BiEncoder
from soft_infonce.integrations.hf.multiprocess import evaluate_retrieval_sharded
from soft_infonce.integrations.hf.retrieval import RetrievalSet, pairs_to_retrieval_set
from soft_infonce.integrations.hf.trainer import SoftInfoNCETrainer

logger = logging.getLogger("soft_infonce.codesearch.train")


def load_data(
    data_args: DataArguments, seed: int, use_tokens: bool = True
) -> tuple[Any, RetrievalSet, dict]:
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
        valid = pairs_to_retrieval_set(valid_pairs, name="valid")
        tests = {"test": pairs_to_retrieval_set(test_pairs, name="test")}
    if data_args.cosqa_dir:
        cosqa = Path(data_args.cosqa_dir)
        tests["cosqa"] = D.load_cosqa_retrieval(
            cosqa / "cosqa-retrieval-dev-500.json", cosqa / "code_idx_map.txt"
        )
    if data_args.max_train_pairs is not None:
        train = train.shuffle(seed=seed).select(range(min(data_args.max_train_pairs, len(train))))
    return train, valid, tests


def add_hard_negatives(
    train: Any, model_args: ModelArguments, data_args: DataArguments, args: Any
) -> tuple[Any, dict[str, Any] | None]:
    """The training pairs with ``--hard_negatives`` mined from their own codes (rows that find
    too few negatives are dropped), and what the mining did; unchanged without the option."""
    spec = data_args.negatives
    if spec is None:
        return train, None
    method, k = spec.method, spec.k
    t0 = time.time()
    options: dict[str, Any] = spec.miner_options()
    if method == "dense":
        options |= {
            "model": load_model(model_args),
            "batch_size": args.per_device_eval_batch_size,
            "max_query_length": args.max_query_length,
            "max_code_length": args.max_code_length,
        }
    mined = D.mine_hard_negatives(
        train,
        seed=args.seed,
        show_progress=not args.disable_tqdm and args.process_index == 0,
        **options,
    )
    info = {
        **spec.to_dict(),
        "pairs": len(train),
        "rows_kept": len(mined),
        "seconds": time.time() - t0,
    }
    logger.info(
        "mined %d %s hard negatives for %d of %d training pairs in %.1f s",
        k,
        method,
        len(mined),
        len(train),
        info["seconds"],
    )
    return mined, info


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


def main(argv: list[str] | None = None, *, prog: str | None = None) -> None:
    """Run the command: parse ``argv`` (default ``sys.argv[1:]``), check everything, then train,
    test and write the results (see :mod:`soft_infonce.codesearch.train`). Problems exit with a
    message."""
    model_args, data_args, training_args = parse_args(argv, prog=prog)
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
    train, mining = add_hard_negatives(train, model_args, data_args, training_args)
    if mining is not None:
        check_sizes(train, training_args)  # rows without k negatives were dropped
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
    if mining is not None:
        payload["hard_negatives"] = mining

    t0 = time.time()
    untrained = load_model(model_args)
    results["zero-shot"] = {
        "test": evaluate_all(untrained, tests, training_args),
        "valid": evaluate_all(untrained, {"valid": valid}, training_args)["valid"],  # the figure
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
        trained = cast(BiEncoder, trainer.model)  # the best one when load_best_model_at_end
        test_metrics = evaluate_all(trained, tests, run_args)
        best = run.output_dir / "best"
        if trainer.is_world_process_zero():
            model_path = model_args.model_name_or_path or default_model_path()
            card = run_card(trainer, model_path, data_args, len(train), test_metrics, run.name)
            trained.save_pretrained(best, model_card=card)
            remove_checkpoints(run.output_dir)  # finished: best/ holds the model
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
    print_next_steps({n: r["saved_model"] for n, r in results.items() if "saved_model" in r})
