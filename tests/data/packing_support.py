"""Shared helpers of the packing, shard-writer and verification tests (not collected).

The fixtures are imported by those modules (``*_fixture``, registered as ``two_layout_catalog`` and
``mixed_subset``).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ssl_cyto.data.scanning import scan
from ssl_cyto.formats.shard_index import cell_key


def read_shards(shard_dir: Path) -> dict[str, dict[str, bytes]]:
    """All samples of a shard folder with plain tarfile: key -> {ext: bytes} (duplicates fail)."""
    out: dict[str, dict[str, bytes]] = {}
    for tar in sorted(shard_dir.glob("cells-*.tar")):
        keys_here: set[str] = set()
        with tarfile.open(tar) as tf:
            for m in tf:
                key, _, ext = m.name.partition(".")
                fh = tf.extractfile(m)
                assert fh is not None
                if key not in keys_here:
                    assert key not in out, f"{key} in two shards"
                    keys_here.add(key)
                out.setdefault(key, {})[ext] = fh.read()
    return out


def cells_by_id(shard_dir: Path) -> dict[str, dict]:
    samples = read_shards(shard_dir)
    by_id = {}
    for key, parts in samples.items():
        row = json.loads(parts["json"])
        assert cell_key(row["cell_id"]) == key
        by_id[row["cell_id"]] = parts | {"row": row}
    return by_id


def hand_catalog(
    root: Path, files: list[str], source: str = "folder:test", labels: list | None = None
) -> pd.DataFrame:
    labels = labels or ["a"] * len(files)
    return pd.DataFrame(
        {
            "cell_id": [f"{source}/{f}" for f in files],
            "source": source,
            "path": files,
            "root": str(root),
            "label": labels,
            "reannot1": None,
            "reannot2": None,
            "um_per_px": np.nan,
            "sha256": None,
        }
    )


def save(img: Image.Image, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


def rgb_noise(seed: int, size: int = 24) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size + 3, 3), dtype=np.uint8), mode="RGB")


@pytest.fixture(scope="module", name="two_layout_catalog")
def two_layout_catalog_fixture(synth_aml: Path, synth_bm: Path) -> pd.DataFrame:
    return scan([("aml-lmu", str(synth_aml)), ("bm-mll", str(synth_bm))])


@pytest.fixture(scope="module", name="mixed_subset")
def mixed_subset_fixture(two_layout_catalog: pd.DataFrame) -> pd.DataFrame:
    """20 random cells of each layout (RGBA TIFF and JPEG)."""
    return two_layout_catalog.groupby("source").sample(n=20, random_state=0).reset_index(drop=True)
