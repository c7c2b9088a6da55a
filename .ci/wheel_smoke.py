"""CI: the installed wheel works on its own (run from outside the checkout, in a fresh venv).

Imports the package from site-packages, trains a tiny random bi-encoder for two steps with
Soft-InfoNCE (BM25 weights), saves it, then indexes the installed package's own functions
and searches them with the ``soft-infonce`` console script and
``python -m soft_infonce.codesearch``, and
runs ``soft-infonce train`` (``--help``, then two steps from a Code-Text file).
A module or file missing from the wheel fails one of these steps.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny_training import NOUNS, VERBS, train_two_steps  # noqa: E402  (beside this script)

import soft_infonce  # noqa: E402
from soft_infonce import BiEncoder  # noqa: E402

package = Path(soft_infonce.__file__).parent
assert "site-packages" in str(package), f"not the installed wheel: {package}"

with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    model, losses = train_two_steps(root)
    model.save_pretrained(root / "model")
    assert BiEncoder.from_pretrained(root / "model").embedding_dim == 32

    bin_dir = Path(sys.executable).parent

    def run(*command: str) -> str:
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, f"{command} failed:\n{result.stderr}"
        return result.stdout

    print(run(str(bin_dir / "soft-infonce"), "index", str(package), "--model", str(root / "model"),
              "--out", str(root / "index"), "--no-progress").strip())  # fmt: skip
    hits = run(sys.executable, "-m", "soft_infonce.codesearch", "search", str(root / "index"),
               "read a json file", "-k", "3").splitlines()  # fmt: skip
    assert len(hits) == 3 and all(str(package) in line for line in hits), hits

    # The training command of the installed package (no examples/ folder): --help, then one
    # InfoNCE run of two steps on a Code-Text file, from the console script.
    usage = run(str(bin_dir / "soft-infonce"), "train", "--help")
    assert usage.startswith("usage: soft-infonce train") and "--code_text_file" in usage, usage
    rows = [{"url": f"u{i}", "docstring_tokens": [v, "a", n],
             "code_tokens": ["def", v, "(", "x", ")", ":", "return", n]}
            for i, (v, n) in enumerate((v, n) for v in VERBS for n in NOUNS)]  # fmt: skip
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run(str(bin_dir / "soft-infonce"), "train", "--model_name_or_path", str(root / "model"),
        "--code_text_file", str(root / "pairs.jsonl"), "--output_dir", str(root / "train"),
        "--runs", "infonce", "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2",
        "--warmup_steps", "0", "--per_device_train_batch_size", "8", "--max_query_length", "16",
        "--max_code_length", "16", "--use_cpu", "true", "--disable_tqdm", "true",
        "--report_to", "none")  # fmt: skip
    trained = json.loads((root / "train" / "results.json").read_text())["runs"]["infonce"]
    assert math.isfinite(trained["train_loss"]) and (root / "train" / "best").is_dir(), trained
    print(
        f"wheel OK: soft_infonce {soft_infonce.__file__}; 2 steps, losses {losses}; "
        f"soft-infonce train: test MRR {trained['test']['test']['mrr']:.3f}"
    )
