"""Write the recipes that reproduce Table 1 of Li et al. (EMNLP 2023), one JSON file per run.

The grid is 3 encoders x 6 CodeSearchNet languages x 4 runs (InfoNCE, then Soft-InfoNCE with
the BM25, SimCSE and trained-model estimators): 72 files named
``<model>_<lang>_<run>.json``, each a flat dict of ``examples/run_codesearch.py``'s
``ModelArguments``, ``DataArguments`` and ``CodeSearchTrainingArguments``::

    python examples/configs/make_configs.py             # (re)write the 72 files
    python examples/configs/make_configs.py --check     # exit 1 when a file is stale
    python examples/configs/make_configs.py --estimate  # the GPU-hour table of the README

Sources of the settings (see examples/README.md for the discussion):
- the paper (arXiv 2310.08069): Section 5 (30 epochs for every model, seeds 1234, 12345 and
  123456), Table 6 (dataset sizes), Table 7 (alpha, beta, t per estimator), Table 8 (time
  per batch);
- its code, github.com/Alex-HaochenLi/Soft-InfoNCE: README commands (lengths, batch sizes,
  learning rates, seed 123456), CodeBERT/models.py (pooler output, dot product),
  UniXCoder/model.py (mean pooling, no L2 normalisation, dot product), run scripts (AdamW
  eps 1e-8, clip 1.0, linear decay; warm-up 0, except one epoch for CodeBERT).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LANGUAGES = ("ruby", "python", "java", "javascript", "php", "go")
#: run name -> (loss, estimator); the estimator is None for plain InfoNCE.
RUNS: dict[str, tuple[str, str | None]] = {
    "infonce": ("infonce", None),
    "soft_bm25": ("soft", "bm25"),
    "soft_simcse": ("soft", "simcse"),
    "soft_trained": ("soft", "trained"),
}
#: The paper's Table 7: (alpha, beta, t) per estimator; every weight is clamped at 0.1.
PRESETS: dict[str, tuple[float, float, float]] = {
    "bm25": (1.5, 0.5, 1.0),
    "simcse": (1.3, 0.7, 0.1),
    "trained": (1.3, 0.7, 5.0),
}
EPOCHS = 30  # Section 5: "The training epoch is set to 30 for all studied models."
SEED = 123456  # the seed of the repository's README; the paper averages 1234, 12345, 123456
DATA_ROOT = "dataset"  # GraphCodeBERT layout: dataset/<lang>/{train,valid,test,codebase}.jsonl
OUTPUT_ROOT = "outputs"
#: One unsupervised SimCSE model, trained on the queries of all six training sets (Section 5),
#: where ``examples/train_simcse.py --output_dir outputs/simcse`` saves it.
SIMCSE_MODEL = f"{OUTPUT_ROOT}/simcse/final"

#: Per-encoder settings. Lengths, batch sizes and learning rates: the repository's README.
MODELS: dict[str, dict[str, Any]] = {
    "codebert": {
        "model_name_or_path": "microsoft/codebert-base",
        "pooling": "pooler",  # encoder(...)[1] in CodeBERT/models.py
        "input_layout": "plain",
        "max_query_length": 200,  # --max_seq_length 200, for queries and codes alike
        "max_code_length": 200,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 100,  # --per_gpu_retrieval_batch_size 100
        "learning_rate": 1e-6,
        "warmup_steps": 1 / EPOCHS,  # run_siamese_test.py warms up for one epoch
    },
    "graphcodebert": {
        "model_name_or_path": "microsoft/graphcodebert-base",
        "pooling": "pooler",
        "input_layout": "graphcodebert",  # code tokens + data-flow nodes (tree-sitter)
        "data_flow_length": 64,
        "max_query_length": 128,
        "max_code_length": 256,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 64,
        "learning_rate": 2e-5,
        "warmup_steps": 0,
    },
    "unixcoder": {
        "model_name_or_path": "microsoft/unixcoder-base",
        "pooling": "mean",
        "input_layout": "unixcoder",  # [cls] <encoder-only> [sep] tokens [sep]
        "max_query_length": 128,
        "max_code_length": 256,
        "per_device_train_batch_size": 64,
        "per_device_eval_batch_size": 64,
        "learning_rate": 2e-5,
        "warmup_steps": 0,
    },
}


def config_name(model: str, lang: str, run: str) -> str:
    """The file stem of one recipe, e.g. ``unixcoder_ruby_soft_bm25``."""
    return f"{model}_{lang}_{run}"


def output_dir(model: str, lang: str, run: str) -> str:
    """Where one run writes (the script adds a folder named after the run inside it)."""
    return f"{OUTPUT_ROOT}/{model}-{lang}/{run.replace('_', '-')}"


def infonce_model_path(model: str, lang: str) -> str:
    """Where the InfoNCE run of ``model``/``lang`` saves its best model.

    ``run_codesearch.py`` saves a single run's best model in ``<output_dir>/best`` (its
    ``BiEncoder.save_pretrained``).
    """
    return f"{output_dir(model, lang, 'infonce')}/best"


def build_config(model: str, lang: str, run: str) -> dict[str, Any]:
    """The flat argument dict of one run (the keys of the script's three dataclasses)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
    if run not in RUNS:
        raise ValueError(f"run must be one of {sorted(RUNS)}, got {run!r}")
    spec = MODELS[model]
    loss, estimator = RUNS[run]
    run_name = f"{model}-{lang}-{run.replace('_', '-')}"
    config: dict[str, Any] = {
        # ModelArguments: raw dot products of the pooled embeddings, as the paper's code.
        "model_name_or_path": spec["model_name_or_path"],
        "allow_download": True,  # a Hub name; the script keeps HF_HUB_OFFLINE=1 unless set
        "pooling": spec["pooling"],
        "normalize": False,
        "model_scale": 1.0,
        "input_layout": spec["input_layout"],
        **(
            {"language": lang, "data_flow_length": spec["data_flow_length"]}
            if spec["input_layout"] == "graphcodebert"
            else {}
        ),
        # DataArguments
        "data_dir": f"{DATA_ROOT}/{lang}",
        "runs": loss if estimator is None else f"{loss}:{estimator}",
        # The loss and its weights
        "loss": loss,
    }
    if estimator is not None:
        alpha, beta, temperature = PRESETS[estimator]
        config |= {
            "estimator": estimator,
            "alpha": alpha,
            "beta": beta,
            "temperature": temperature,
            "min_weight": 0.1,
        }
        if estimator == "simcse":
            config["estimator_model"] = SIMCSE_MODEL
        elif estimator == "trained":
            config["estimator_model"] = infonce_model_path(model, lang)
    config |= {
        "max_query_length": spec["max_query_length"],
        "max_code_length": spec["max_code_length"],
        "output_dir": output_dir(model, lang, run),
        "run_name": run_name,
        # Optimisation: AdamW (eps 1e-8), linear decay, gradient clipping at 1.0, float32.
        "seed": SEED,
        "num_train_epochs": EPOCHS,
        "max_steps": -1,  # the script's default (60 steps) is for its CPU demo
        "per_device_train_batch_size": spec["per_device_train_batch_size"],
        "per_device_eval_batch_size": spec["per_device_eval_batch_size"],
        "learning_rate": spec["learning_rate"],
        "warmup_steps": spec["warmup_steps"],
        "lr_scheduler_type": "linear",
        "weight_decay": 0.0,
        "adam_epsilon": 1e-8,
        "max_grad_norm": 1.0,
        "dataloader_num_workers": 4,
        # Model selection on the validation set after every epoch; test once, at the end.
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "save_total_limit": 1,
        "save_only_model": True,
        "load_best_model_at_end": True,
        "metric_for_best_model": "mrr",
        "greater_is_better": True,
        "logging_steps": 100,
        "report_to": "none",
    }
    return config


def all_configs() -> dict[str, dict[str, Any]]:
    """Every recipe, keyed by file stem."""
    return {
        config_name(m, lang, r): build_config(m, lang, r)
        for m in MODELS
        for lang in LANGUAGES
        for r in RUNS
    }


def render(config: dict[str, Any]) -> str:
    """The exact text of a config file."""
    return json.dumps(config, indent=2) + "\n"


# ----------------------------------------------------------------------------- estimates
#: Table 6: training pairs, validation queries, code-base size.
DATA_SIZES: dict[str, tuple[int, int, int]] = {
    "ruby": (24_927, 1_400, 4_360),
    "python": (251_820, 13_914, 43_827),
    "java": (164_923, 5_183, 40_347),
    "javascript": (58_025, 3_885, 13_981),
    "php": (241_241, 12_982, 52_660),
    "go": (167_288, 7_325, 28_120),
}
#: Table 8 (CodeBERT, batch 32, 200 + 200 tokens, RTX A6000): seconds per training batch.
SECONDS_PER_BATCH = {"infonce": 0.75, "soft_bm25": 0.77, "soft_simcse": 0.81, "soft_trained": 0.98}
_REFERENCE_TOKENS = 32 * (200 + 200)


def estimate_gpu_hours(model: str, lang: str, run: str) -> float:
    """Rough RTX-A6000 hours of one run: Table 8's time per batch, scaled by tokens per batch.

    Training: epochs x batches x Table 8's seconds per batch x (this recipe's padded tokens per
    batch / CodeBERT's 12,800). Validation after each epoch: the queries and the code base,
    forward only, counted as a third of a training token. An estimate, not a measurement.
    """
    spec = MODELS[model]
    n_train, n_valid, n_codes = DATA_SIZES[lang]
    batch = spec["per_device_train_batch_size"]
    seconds_per_token = SECONDS_PER_BATCH[run] / _REFERENCE_TOKENS
    batch_tokens = batch * (spec["max_query_length"] + spec["max_code_length"])
    train = EPOCHS * math.ceil(n_train / batch) * batch_tokens * seconds_per_token
    eval_tokens = n_valid * spec["max_query_length"] + n_codes * spec["max_code_length"]
    evaluation = EPOCHS * eval_tokens * SECONDS_PER_BATCH["infonce"] / _REFERENCE_TOKENS / 3
    return (train + evaluation) / 3600


def estimate_table() -> str:
    """The README's markdown table of estimated GPU hours per recipe."""
    lines = [
        "| model | language | InfoNCE | BM25 | SimCSE | trained | all four |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    total = 0.0
    for model in MODELS:
        for lang in LANGUAGES:
            hours = [estimate_gpu_hours(model, lang, run) for run in RUNS]
            total += sum(hours)
            cells = " | ".join(f"{h:.0f}" for h in [*hours, sum(hours)])
            lines.append(f"| {model} | {lang} | {cells} |")
    lines.append(f"| all | all | | | | | {total:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only compare; exit 1 if stale.")
    parser.add_argument("--estimate", action="store_true", help="Print the GPU-hour table.")
    args = parser.parse_args(argv)
    if args.estimate:
        print(estimate_table())
        return 0
    stale = []
    for stem, config in all_configs().items():
        path = HERE / f"{stem}.json"
        text = render(config)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    known = {f"{stem}.json" for stem in all_configs()}
    extra = sorted(p.name for p in HERE.glob("*.json") if p.name not in known)
    if args.check:
        for name in stale:
            print(f"stale or missing: {name}")
        for name in extra:
            print(f"not generated here: {name}")
        return 1 if stale or extra else 0
    print(f"wrote {len(stale)} of {len(known)} configs to {HERE}")
    for name in extra:
        print(f"warning: {name} is not generated by this script")
    return 0


if __name__ == "__main__":
    sys.exit(main())
