"""Multi-process runs that are what they say: the launch check, rank-averaged statistics and
sharded evaluation, with two gloo processes set up by the Trainer's own arguments
(``use_cpu=True``, as under ``torchrun``) against one process."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.multiprocessing as mp

from soft_infonce.integrations.hf.multiprocess import (
    check_launch,
    gather_rows,
    reduce_statistics,
)

pytest.importorskip("transformers")

WORLD = 2
WORDS = "read write sort parse open close json file list string path key value".split()
QUERIES = ["read a json file", "sort a list", "open a path", "parse a string", "write a file"]
QUERIES += ["close a file", "sort key value"]  # 7 queries: shares of 4 and 3
CODES = ["sort list", "json file read", "key value sort", "path open", "string parse"]
CODES += ["file write", "list list", "file close", "value key"]  # 9 codes: shares of 5 and 4
RELEVANT = [1, 0, 3, 4, 5, 7, 2]
STEPS = 2


def tiny_model():
    from transformers import BertConfig, BertModel, BertTokenizer

    from soft_infonce.integrations.hf.modeling import BiEncoder

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])}
    vocab.update({w: len(vocab) + i for i, w in enumerate(WORDS)})
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=16,
    )
    return BiEncoder(BertModel(config), BertTokenizer(vocab=vocab), normalize=True, scale=20.0)


def statistics_of(rank: int, step: int) -> dict[str, torch.Tensor]:
    """What the loss would record on ``rank`` at ``step`` (distinct on every rank and step)."""
    base = 10.0 * rank + step
    return {
        "q2c/weight_mean": torch.tensor(base),
        "q2c/weight_min": torch.tensor(base - 5.0),
        "q2c/weight_max": torch.tensor(base + 5.0),
    }


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
    )
    torch.set_num_threads(1)
    import datasets
    import torch.distributed as dist

    from soft_infonce.integrations.hf.trainer import (
        SoftInfoNCETrainer,
        SoftInfoNCETrainingArguments,
    )

    args = SoftInfoNCETrainingArguments(  # initialises the gloo group, as under torchrun
        output_dir=os.path.join(out, "trainer"),
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        per_device_eval_batch_size=2,
        per_device_train_batch_size=2,
        max_query_length=8,
        max_code_length=8,
        loss="infonce",
    )
    facts: dict = {"world": args.world_size, "initialised": dist.is_initialized()}
    try:
        from accelerate import PartialState

        with PartialState().split_between_processes(list(range(7))) as mine:
            facts["shard"] = mine
        local = torch.tensor(mine, dtype=torch.float32)[:, None].expand(-1, 2)
        facts["gathered"] = gather_rows(local)[:, 0].tolist()
        reduced = reduce_statistics({**statistics_of(rank, 0), "count": torch.tensor(rank + 1)})
        facts["reduced"] = {k: v.item() for k, v in reduced.items()}
        try:
            reduce_statistics({f"only_on_{rank}": torch.tensor(1.0)})
        except ValueError as error:
            facts["keys_error"] = str(error)
        pairs = datasets.Dataset.from_list(
            [{"query": q, "code": c} for q, c in zip(QUERIES, CODES)]
        )
        model = tiny_model()
        encode, facts["encoded"] = model.encode_texts, []

        def counting_encode(texts, *a, **k):
            facts["encoded"].append([k.get("side"), len(texts)])
            return encode(texts, *a, **k)

        model.encode_texts = counting_encode
        trainer = SoftInfoNCETrainer(model, args, train_dataset=pairs)
        from soft_infonce.integrations.hf.retrieval import RetrievalSet

        rset = RetrievalSet(queries=QUERIES, codes=CODES, relevant=RELEVANT, name="valid")
        facts["metrics"] = trainer.evaluate(rset)
        for step in range(STEPS):
            trainer._accumulate(statistics_of(rank, step))
        trainer.log({"loss": 1.0})
        facts["logged"] = trainer.state.log_history[-1]
        with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
            json.dump(facts, handle)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("multiprocess")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_the_arguments_set_up_two_processes(ranks) -> None:
    assert [(r["world"], r["initialised"]) for r in ranks] == [(WORLD, True)] * WORLD


def test_shares_are_contiguous_and_uneven_rows_gather_in_order(ranks) -> None:
    assert [r["shard"] for r in ranks] == [[0, 1, 2, 3], [4, 5, 6]]
    assert all(r["gathered"] == [float(i) for i in range(7)] for r in ranks)


def test_statistics_are_averaged_and_min_max_over_ranks(ranks) -> None:
    for r in ranks:
        # mean of 0 and 10; min of -5 and 5; max of 5 and 15; the int count averaged too
        assert r["reduced"] == {
            "q2c/weight_mean": 5.0,
            "q2c/weight_min": -5.0,
            "q2c/weight_max": 15.0,
            "count": 1.5,
        }
        assert "same keys on every process" in r["keys_error"]


def test_trainer_logs_the_statistics_of_every_rank(ranks) -> None:
    means = [
        statistics_of(rank, s)["q2c/weight_mean"].item()
        for rank in range(WORLD)
        for s in range(STEPS)
    ]
    lows = [
        statistics_of(rank, s)["q2c/weight_min"].item()
        for rank in range(WORLD)
        for s in range(STEPS)
    ]
    highs = [
        statistics_of(rank, s)["q2c/weight_max"].item()
        for rank in range(WORLD)
        for s in range(STEPS)
    ]
    for r in ranks:
        logged = r["logged"]
        assert logged["q2c/weight_mean"] == pytest.approx(sum(means) / len(means))
        assert logged["q2c/weight_min"] == min(lows) and logged["q2c/weight_max"] == max(highs)


def test_sharded_evaluation_equals_one_process(ranks) -> None:
    from soft_infonce.integrations.hf.evaluation import evaluate_retrieval

    expected = evaluate_retrieval(
        tiny_model(),
        QUERIES,
        CODES,
        RELEVANT,
        batch_size=2,
        max_query_length=8,
        max_code_length=8,
        show_progress=False,
    )
    assert 0.0 < expected["mrr"] < 1.0  # an untrained model: the ranks are informative
    shares = [[["query", 4], ["code", 5]], [["query", 3], ["code", 4]]]
    assert [r["encoded"] for r in ranks] == shares  # each process encoded its share only
    for r in ranks:
        metrics = r["metrics"]
        assert metrics["eval_num_queries"] == len(QUERIES)
        assert metrics["eval_mrr"] == pytest.approx(expected["mrr"], abs=1e-9)
        for k in (1, 5, 10):
            assert metrics[f"eval_recall_at_{k}"] == pytest.approx(expected[f"recall@{k}"])


# -- launches that would not train together -------------------------------------------------
def test_a_launcher_world_without_a_process_group_is_an_error(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(
        RuntimeError, match=r"started 2 processes .* not initialised.*--use_cpu true"
    ):
        check_launch(1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    check_launch(1)  # one process: nothing to say
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an int, got 'two'"):
        check_launch(1)


def test_accelerates_single_process_launch_warns(monkeypatch, caplog) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")  # what `accelerate launch` sets
    monkeypatch.setenv("MASTER_PORT", "29500")  # only when asked for more than one process
    with caplog.at_level(logging.WARNING, logger="soft_infonce.integrations.hf.multiprocess"):
        check_launch(1)
    assert "asked for several processes but started one" in caplog.text
    caplog.clear()
    monkeypatch.delenv("MASTER_PORT")
    check_launch(1)
    assert not caplog.text


@pytest.mark.slow
def test_torchrun_on_cpu_without_use_cpu_fails_on_every_process(tmp_path) -> None:
    """The issue's case: ``torchrun --nproc_per_node 2`` on CPU without ``--use_cpu true``."""
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            from soft_infonce.integrations.hf.trainer import SoftInfoNCETrainingArguments
            SoftInfoNCETrainingArguments(output_dir="out", report_to="none")
            print("no error")
            """
        )
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={WORLD}", str(script)]
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "no error" not in output, output[-3000:]
    assert output.count("A launcher started 2 processes") >= 1, output[-3000:]
    assert "--use_cpu true" in output


@pytest.mark.slow
def test_run_codesearch_under_torchrun_trains_together_and_writes_once(tmp_path) -> None:
    """Two gloo processes through the example script: a global batch of 2 x 8 (the epoch
    counter says so), a second run whose trained estimator loads the first run's best model
    (written by rank 0 while rank 1 waits), one results table and one results.json."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", *WORDS]
    (tmp_path / "vocab.txt").write_text("\n".join(words))
    model_dir = tmp_path / "tiny"
    BertTokenizerFast(str(tmp_path / "vocab.txt")).save_pretrained(model_dir)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=24,
    )
    BertModel(config).save_pretrained(model_dir)
    rows = [
        {"url": f"u{i}", "docstring_tokens": [v, "a", n], "code_tokens": [n, v]}
        for i, (v, n) in enumerate((v, n) for v in WORDS[:8] for n in WORDS[4:])
    ]  # 72 pairs: 14 test, 7 valid, 51 train
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "out"
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={WORLD}", os.path.join(root, "examples", "run_codesearch.py")]
    command += [
        "--model_name_or_path", str(model_dir), "--code_text_file", str(data),
        "--output_dir", str(out), "--runs", "infonce,soft:trained", "--use_cpu", "true",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "4",
        "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1",
        "--warmup_steps", "0", "--max_query_length", "8", "--max_code_length", "8",
        "--gather_across_devices", "true", "--disable_tqdm", "true", "--report_to", "none",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert output.count("wall time") == 1  # the table and the files: rank 0 only
    payload = json.loads((out / "results.json").read_text())
    train_size = payload["data_sizes"]["train"]
    for name in ("infonce", "soft:trained"):
        run = payload["runs"][name]
        first = next(h for h in run["history"] if h.get("step") == 1 and "loss" in h)
        assert first["epoch"] == pytest.approx(1 / (train_size // (WORLD * 8)), rel=1e-3)
        assert run["test"]["test"]["num_queries"] == payload["data_sizes"]["test"][0]
    trained = payload["runs"]["soft:trained"]["loss"]
    assert trained["estimator"] == "TrainedModelEstimator"
    assert "q2c/weight_mean" in payload["runs"]["soft:trained"]["history"][0]
