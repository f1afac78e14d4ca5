"""Verifying a shard folder: every check names the broken shard."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pandas as pd

from ssl_cyto.data.packing import pack
from ssl_cyto.data.verification import verify
from ssl_cyto.formats.hashing import sha256_file
from ssl_cyto.formats.shard_index import cell_key, write_index
from tests.data.packing_support import two_layout_catalog_fixture  # noqa: F401 - fixture


def test_verify_names_the_broken_shard(two_layout_catalog: pd.DataFrame, tmp_path: Path) -> None:
    out = tmp_path / "v"
    pack(two_layout_catalog.head(24), out, shard_size=8, progress=False)
    assert verify(out, progress=False)["ok"]
    data = bytearray((out / "cells-000001.tar").read_bytes())
    data[700] ^= 0xFF
    (out / "cells-000001.tar").write_bytes(bytes(data))
    (out / "cells-000002.tar").unlink()
    report = verify(out, progress=False)
    assert not report["ok"]
    assert any(p.startswith("cells-000001.tar: sha256") for p in report["problems"])
    assert any(p.startswith("cells-000002.tar: missing") for p in report["problems"])


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_verify_checks_every_sample(tmp_path: Path) -> None:
    good, other = cell_key("s/a.png"), cell_key("s/b.png")
    _tar(
        tmp_path / "cells-000000.tar",
        {
            f"{good}.json": json.dumps({"cell_id": "s/a.png"}).encode(),
            f"{good}.png": b"not a png",
            f"{other}.json": json.dumps({"cell_id": "s/c.png"}).encode(),
            f"{other}.png": b"x",
            "lonely.png": b"x",
            "list.json": b"[1]",
            "list.png": b"x",
        },
    )
    _tar(
        tmp_path / "cells-000001.tar",
        {f"{good}.json": json.dumps({"cell_id": "s/a.png"}).encode(), f"{good}.jpg": b"x"},
    )
    tars = sorted(tmp_path.glob("cells-*.tar"))
    write_index(
        tmp_path,
        {
            "total_cells": 5,
            "shards": [
                {"name": t.name, "count": c, "bytes": t.stat().st_size, "sha256": sha256_file(t)}
                for t, c in zip(tars, [4, 1], strict=True)
            ],
        },
    )
    (tmp_path / "cells-000002.tar").touch()
    report = verify(tmp_path, decode=True, progress=False)
    text = "\n".join(report["problems"])
    assert report["cells"] == 5 and not report["ok"]
    assert "cells-000002.tar: shard file not listed in index.json" in text
    assert f"cells-000000.tar: sample {other}: json cell_id 's/c.png' does not match" in text
    assert "cells-000000.tar: sample lonely has ['png'], expected json + one image" in text
    assert "cells-000000.tar: sample list: bad json (not an object)" in text
    assert f"cells-000000.tar: cells-000000.tar:{good}.png: cannot decode image" in text
    assert "cells-000001.tar: cell 's/a.png' appears in more than one shard" in text
