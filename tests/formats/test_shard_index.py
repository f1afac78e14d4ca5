"""Shard folder names: sample keys, shard names, index.json read/write."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_cyto.formats.errors import InputError, MissingInputError
from ssl_cyto.formats.shard_index import (
    cell_key,
    is_shard_dir,
    key_to_cell_id,
    read_index,
    shard_name,
    shard_paths,
    write_index,
)


def test_cell_key_is_dot_free_unique_and_reversible() -> None:
    ids = [
        "aml-lmu/AML-Cytomorphology/BAS/BAS_0001.tiff",
        "bm-mll/BM_cytomorphology_data/NGS/0001-1000/NGS_00001.jpg",
        "folder:pbc/ig/IG 1.jpg",
        "folder:pbc/ig/IG_1.jpg",
        "folder:pbc/ig/IG%2E1.jpg",
        "folder:pbc/ig/IG.1.jpg",
        "folder:x/ümlaut/ß.png",
    ]
    keys = [cell_key(i) for i in ids]
    assert len(set(keys)) == len(ids)
    for i, k in zip(ids, keys, strict=True):
        assert "." not in k and "/" not in k
        assert key_to_cell_id(k) == i


def test_index_round_trip_and_shard_paths(tmp_path: Path) -> None:
    assert shard_name(42) == "cells-000042.tar"
    assert not is_shard_dir(tmp_path)
    with pytest.raises(MissingInputError, match="ssl-cyto pack"):
        read_index(tmp_path)
    (tmp_path / "cells-000001.tar").touch()
    (tmp_path / "cells-000000.tar").touch()
    assert is_shard_dir(tmp_path)
    assert [p.name for p in shard_paths(tmp_path)] == ["cells-000000.tar", "cells-000001.tar"]
    index = {"shards": [{"name": "cells-000001.tar"}, {"name": "cells-000000.tar"}], "note": "ß"}
    assert write_index(tmp_path, index) == tmp_path / "index.json"
    assert read_index(tmp_path) == index
    assert [p.name for p in shard_paths(tmp_path)] == ["cells-000001.tar", "cells-000000.tar"]
    (tmp_path / "index.json").write_text("{broken")
    with pytest.raises(InputError, match="not valid JSON"):
        read_index(tmp_path)
