"""evaluate_retrieval refuses texts that are not strings before encoding and reads any
iterable of relevant indices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from helpers.search_fixtures import save_tiny_model  # noqa: E402

from soft_infonce.integrations.hf.evaluation import evaluate_retrieval  # noqa: E402
from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402


class _Model:
    """Only what evaluate_retrieval reads before encoding: it must fail before that."""

    scale = 1.0

    def encode_texts(self, *args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("encoded before checking the texts")


def test_evaluate_retrieval_names_a_code_that_is_not_text() -> None:
    with pytest.raises(TypeError, match=r"codes\[1\] must be a str, got NoneType"):
        evaluate_retrieval(_Model(), ["q"], ["def f(): pass", None], [0])
    with pytest.raises(TypeError, match=r"queries\[0\] must be a str, got int"):
        evaluate_retrieval(_Model(), [3], ["def f(): pass"], [0])
    with pytest.raises(TypeError, match="relevant must be a sequence"):
        evaluate_retrieval(_Model(), ["q"], ["def f(): pass"], 0)


def test_evaluate_retrieval_reads_relevant_from_a_generator(tmp_path: Path) -> None:
    model = BiEncoder.from_pretrained(save_tiny_model(tmp_path / "m"))
    queries, codes = ["read a json file", "sort a list"], ["def load ( path )", "def sort ( x )"]
    kwargs = {"show_progress": False}
    expected = evaluate_retrieval(model, queries, codes, [0, 1], **kwargs)
    assert evaluate_retrieval(model, queries, codes, (i for i in range(2)), **kwargs) == expected


@pytest.mark.parametrize("side", ["queries", "codes"])
def test_evaluate_retrieval_refuses_a_blank_text(side: str) -> None:
    texts = {"queries": ["read a file", "sort"], "codes": ["def f(): pass", "def g(): pass"]}
    texts[side][1] = " \n"
    with pytest.raises(ValueError, match=rf"{side}\[1\] is blank"):
        evaluate_retrieval(_Model(), texts["queries"], texts["codes"], [0, 1])
