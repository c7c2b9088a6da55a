"""CI: the wheel installed with no extra runs the README's loss snippet and a two-step Trainer run.

Run from outside the checkout in a fresh venv holding only the wheel's own dependencies (torch,
numpy, scipy, safetensors, tqdm, transformers, datasets, accelerate). Argument: the path of the
README.md whose loss snippet (the first Python block using ``SoftInfoNCELoss``) is executed.
Also checks that an extra's module fails with an ImportError naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXTRAS = ("sentence_transformers", "faiss", "tree_sitter", "matplotlib")
present = [name for name in EXTRAS if importlib.util.find_spec(name) is not None]
assert not present, f"an extra's dependency is installed, the check would prove nothing: {present}"

# 1. The README's loss snippet, as written.
readme = Path(sys.argv[1]).read_text(encoding="utf-8")
blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
snippet = next(block for block in blocks if "SoftInfoNCELoss" in block)
namespace: dict = {}
exec(compile(snippet, "README.md (loss snippet)", "exec"), namespace)  # noqa: S102
readme_loss = float(namespace["loss"].detach())
assert math.isfinite(readme_loss), readme_loss

# 2. A missing extra is one ImportError that names it.
for module, extra in (
    ("soft_infonce.integrations.sentence_transformers", "sentence-transformers"),
    ("soft_infonce.codesearch.search", "search"),
):
    try:
        importlib.import_module(module).__dict__  # noqa: B018
        if module.endswith("search"):
            from soft_infonce.codesearch.search._faiss import import_faiss

            import_faiss()
    except ImportError as error:
        assert f"soft-infonce[{extra}]" in str(error), f"{module}: {error}"
    else:
        raise AssertionError(f"{module} worked without the {extra} extra")

# 3. Two Trainer steps on a tiny random BERT.
from tiny_training import train_two_steps  # noqa: E402  (beside this script)

with tempfile.TemporaryDirectory() as tmp:
    _, losses = train_two_steps(Path(tmp))
print(
    f"core wheel OK: README loss {float(namespace['loss']):.4f}; 2 Trainer steps, losses {losses}"
)
