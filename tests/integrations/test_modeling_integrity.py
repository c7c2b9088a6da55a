"""A saved model folder is whole or refused: every part deleted, truncated or emptied either
loads the same model or raises an error naming that part."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from helpers.search_fixtures import save_tiny_model  # noqa: E402

from soft_infonce.integrations.hf.modeling import BiEncoder  # noqa: E402
from soft_infonce.integrations.hf.modeling.integrity import ModelFolderError  # noqa: E402

TEXTS = ["read a json file", "def load ( path ) : return json . load ( open ( path ) )"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def reference(saved: Path) -> tuple[dict, torch.Tensor]:
    model = BiEncoder.from_pretrained(saved)
    return model.get_config_dict(), model.encode_texts(TEXTS, side="code")


def _parts(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _empty(file: Path) -> None:
    file.write_bytes(b"")


# Parts a BiEncoder does not need: without them (or with them damaged) it loads the same model.
OPTIONAL = {"README.md", "config_sentence_transformers.json", "sentence_bert_config.json",
            "modules.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"}  # fmt: skip
# Damaged (not deleted), these are still read and must then be refused.
READ_WHEN_PRESENT = OPTIONAL - {"README.md", "vocab.txt"}


def test_the_table_covers_every_part(saved: Path) -> None:
    assert _parts(saved) == sorted(
        OPTIONAL | {"1_Pooling/config.json", "bi_encoder.json", "config.json", "model.safetensors"}
    )


@pytest.mark.parametrize(
    "damage", [Path.unlink, _truncate, _empty], ids=["delete", "truncate", "empty"]
)
@pytest.mark.parametrize(
    "part",
    ["1_Pooling/config.json", "README.md", "bi_encoder.json", "config.json",
     "config_sentence_transformers.json", "model.safetensors", "modules.json",
     "sentence_bert_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"],
)  # fmt: skip
def test_a_damaged_part_loads_the_same_model_or_is_named(
    saved: Path, reference: tuple[dict, torch.Tensor], tmp_path: Path,
    part: str, damage: Callable[[Path], None], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    damage(folder / part)
    deleted = damage is Path.unlink
    must_refuse = part not in OPTIONAL and not (deleted and part == "bi_encoder.json")
    must_refuse |= not deleted and part in READ_WHEN_PRESENT
    if must_refuse:
        with pytest.raises(ModelFolderError, match=part.replace(".", r"\.")):
            BiEncoder.from_pretrained(folder)
        return
    with caplog.at_level(logging.WARNING):
        model = BiEncoder.from_pretrained(folder)
    settings, embeddings = reference
    assert torch.allclose(model.encode_texts(TEXTS, side="code"), embeddings, atol=1e-6)
    if deleted and part == "bi_encoder.json":  # settings from the modules, scale warned about
        assert model.get_config_dict() == {**settings, "scale": 1.0}
        assert "scale (not recorded there) is 1.0" in caplog.text
    else:
        assert model.get_config_dict() == settings


def test_without_a_vocabulary_the_tokenizer_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.txt").unlink()
    with pytest.raises(ModelFolderError, match="no vocabulary: tokenizer.json is missing"):
        BiEncoder.from_pretrained(folder)


def test_settings_come_from_the_modules_without_bi_encoder_json(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "m")
    model = BiEncoder.from_pretrained(folder, normalize=True, scale=20.0)
    model.save_pretrained(tmp_path / "normalized")
    (tmp_path / "normalized" / "bi_encoder.json").unlink()
    loaded = BiEncoder.from_pretrained(tmp_path / "normalized")
    assert (loaded.pooling, loaded.normalize) == ("mean", True)
    assert BiEncoder.from_pretrained(tmp_path / "normalized", scale=20.0).scale == 20.0


@pytest.mark.parametrize(
    ("key", "value", "modules_say"),
    [("normalize", True, "normalize=False"), ("pooling", "cls", "pooling='mean'")],
)
def test_settings_that_disagree_with_the_modules_are_refused(
    saved: Path, tmp_path: Path, key: str, value: object, modules_say: str
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    settings = json.loads((folder / "bi_encoder.json").read_text())
    (folder / "bi_encoder.json").write_text(json.dumps({**settings, key: value}))
    with pytest.raises(
        ModelFolderError, match=rf"bi_encoder\.json says {key}=.* give {modules_say}"
    ):
        BiEncoder.from_pretrained(folder)


def test_modules_this_library_cannot_read_without_settings_are_refused(
    saved: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    (folder / "bi_encoder.json").unlink()
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    with pytest.raises(ModelFolderError, match="pass pooling= and normalize="):
        BiEncoder.from_pretrained(folder)
    assert BiEncoder.from_pretrained(folder, pooling="mean", normalize=False).pooling == "mean"


@pytest.mark.parametrize(
    ("key", "change", "message"),
    [("num_hidden_layers", 1, r"model\.safetensors lacks 16 tensor\(s\) config\.json declares"),
     ("hidden_size", 32, r"the tensors of model\.safetensors do not fit config\.json"),
     ("vocab_size", -7, r"the tensors of model\.safetensors do not fit config\.json")],
)  # fmt: skip
def test_weights_that_do_not_fit_config_json_are_refused(
    saved: Path, tmp_path: Path, key: str, change: int, message: str
) -> None:
    """An edited config.json would otherwise load with layers left at random."""
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    config = json.loads((folder / "config.json").read_text())
    config[key] += change
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=message):
        BiEncoder.from_pretrained(folder)


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"pooling": "max"}, r"bi_encoder\.json: pooling must be one of"),
     ({"scale": -1}, r"bi_encoder\.json: scale must be"),
     ({"normalize": "yes"}, r"bi_encoder\.json: normalize must be a bool")],
)  # fmt: skip
def test_a_bad_setting_in_bi_encoder_json_names_the_file(
    saved: Path, tmp_path: Path, setting: dict, message: str
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    (folder / "modules.json").unlink()  # the modules would disagree first
    settings = json.loads((folder / "bi_encoder.json").read_text())
    (folder / "bi_encoder.json").write_text(json.dumps({**settings, **setting}))
    with pytest.raises(ModelFolderError, match=message):
        BiEncoder.from_pretrained(folder)
    key = next(iter(setting))  # given by the caller, the setting from the file is not used
    assert BiEncoder.from_pretrained(folder, **{key: settings[key]}).get_config_dict() == settings
