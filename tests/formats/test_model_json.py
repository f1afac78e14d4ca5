"""model.json: the one reader/writer round-trips, and names the file and the fix when it cannot."""

from __future__ import annotations

import pytest

from ssl_cyto.formats.errors import InputError, MissingInputError
from ssl_cyto.formats.model_json import MODEL_JSON, MODEL_JSON_KEYS, read_model_json, write_model_json


def test_round_trip_folder_or_file(tmp_path) -> None:
    meta = {k: None for k in MODEL_JSON_KEYS} | {"architecture": "tiny_cnn", "input_size": 32}
    path = write_model_json(tmp_path / "bb", meta)
    assert path == tmp_path / "bb" / MODEL_JSON and path.read_text().endswith("\n")
    assert read_model_json(tmp_path / "bb") == meta == read_model_json(path)


def test_missing_and_broken(tmp_path) -> None:
    with pytest.raises(MissingInputError, match="ssl-cyto export"):
        read_model_json(tmp_path)
    (tmp_path / MODEL_JSON).write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        read_model_json(tmp_path)
    (tmp_path / MODEL_JSON).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_model_json(tmp_path / MODEL_JSON)
