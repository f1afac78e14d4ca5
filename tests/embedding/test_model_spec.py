"""ssl_cyto.embedding.load_model: every --model form gives the same weights identity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssl_cyto.embedding import EmbedError, MissingModelError, load_model
from ssl_cyto.formats.errors import MissingInputError
from ssl_cyto.models.weights import load_backbone_folder


def test_name_is_seeded_and_saved(tmp_path: Path) -> None:
    module, meta, folder = load_model("tiny_cnn", tmp_path / "bb", seed=3)
    assert folder == (tmp_path / "bb").resolve() and meta["random_init"] is True and meta["seed"] == 3
    again, meta2, none = load_model("tiny_cnn", seed=3)  # no folder: saved in a temporary one
    assert none is None and meta2["weights_sha256"] == meta["weights_sha256"]
    assert load_model("tiny_cnn", seed=4)[1]["weights_sha256"] != meta["weights_sha256"]
    loaded, saved = load_backbone_folder(folder)
    assert saved["weights_sha256"] == meta["weights_sha256"]
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))


def test_folder_and_model_json_used_in_place(tmp_path: Path) -> None:
    _, meta, folder = load_model("tiny_cnn", tmp_path / "bb")
    assert folder is not None
    for spec in (folder, folder / "model.json"):
        _, m, where = load_model(spec)
        assert where == folder and m["weights_sha256"] == meta["weights_sha256"]
    with pytest.raises(EmbedError, match="--input-size applies to a model given by name only"):
        load_model(folder, input_size=64)


def test_missing_paths_are_clear(tmp_path: Path) -> None:
    with pytest.raises(MissingModelError, match="checkpoint not found"):
        load_model(tmp_path / "run.ckpt")
    with pytest.raises(MissingInputError, match="not found"):
        load_model(tmp_path / "nope")


def test_checkpoint_is_saved_as_its_export(tmp_path: Path) -> None:
    from ssl_cyto.training.export import export_checkpoint

    ckpt = Path(__file__).resolve().parents[1] / "fixtures" / "main_f8d3bf8" / "simclr_tiny.ckpt"
    _, meta, folder = load_model(ckpt, tmp_path / "bb")
    assert folder == (tmp_path / "bb").resolve() and (folder / "weights.pt").is_file()
    assert meta["random_init"] is False and meta["checkpoint"] == str(ckpt.resolve())
    exported = export_checkpoint(ckpt, tmp_path / "export")
    _, meta2, _ = load_model(exported)
    assert meta2["weights_sha256"] == meta["weights_sha256"]
