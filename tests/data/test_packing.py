"""Packing cells into WebDataset shards: read-back, seeded shuffle, resume, option checks, resizing."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ssl_cyto.data import shard_writer
from ssl_cyto.data.images import open_rgb
from ssl_cyto.data.packing import PackError, PackOptionsMismatch, pack
from ssl_cyto.data.verification import verify
from ssl_cyto.formats.catalog import write_catalog
from tests.data.packing_support import (  # noqa: F401 - fixtures
    cells_by_id,
    hand_catalog,
    mixed_subset_fixture,
    two_layout_catalog_fixture,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_layout_pack(
    two_layout_catalog: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("packed") / "shards"
    index = pack(two_layout_catalog, out, shard_size=16, workers=2, progress=False)
    return out, index


def test_pack_both_layouts_reads_back_exactly(two_layout_catalog: pd.DataFrame, two_layout_pack) -> None:
    out, index = two_layout_pack
    cat = two_layout_catalog
    assert index["total_cells"] == len(cat) and not index["skipped"]
    assert index["sources"] == cat["source"].value_counts().sort_index().to_dict()
    assert index["classes"] == cat["label"].value_counts().sort_index().to_dict()
    assert verify(out, decode=True, progress=False)["ok"]

    cells = cells_by_id(out)
    assert set(cells) == set(cat["cell_id"])
    for row in cat.to_dict(orient="records"):
        got = cells[row["cell_id"]]
        original = Path(row["root"]) / row["path"]
        for col in ("source", "path", "label"):
            assert got["row"][col] == row[col]
        if original.suffix.lower() == ".jpg":  # BM-MLL JPEGs pass through byte for byte
            assert got["jpg"] == original.read_bytes()
        else:  # AML-LMU RGBA TIFF -> lossless RGB PNG composited on white
            assert set(got) == {"png", "json", "row"}
            stored = Image.open(io.BytesIO(got["png"]))
            assert stored.mode == "RGB"
            assert np.array_equal(np.asarray(stored), np.asarray(open_rgb(original)))

    # the seeded shuffle mixes sources within shards
    mixed = 0
    for tar in sorted(out.glob("cells-*.tar")):
        with tarfile.open(tar) as tf:
            srcs = {n.split("%2F")[0] for n in tf.getnames()}
        mixed += len(srcs) > 1
    assert mixed >= index["n_shards"] - 1


@pytest.fixture(scope="module")
def subset_pack(mixed_subset: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("subset") / "shards"
    return out, pack(mixed_subset, out, shard_size=8, workers=1, progress=False)


def test_pack_result_does_not_depend_on_workers(
    mixed_subset: pd.DataFrame, subset_pack, tmp_path: Path
) -> None:
    _, index1 = subset_pack  # workers=1
    index2 = pack(mixed_subset, tmp_path / "w2", shard_size=8, workers=2, progress=False)
    assert [s["sha256"] for s in index1["shards"]] == [s["sha256"] for s in index2["shards"]]
    other_seed = pack(mixed_subset.head(8), tmp_path / "s1", shard_size=4, seed=1, progress=False)
    same_seed = pack(mixed_subset.head(8), tmp_path / "s0", shard_size=4, seed=0, progress=False)
    assert [s["sha256"] for s in other_seed["shards"]] != [s["sha256"] for s in same_seed["shards"]]


def test_pack_pbc_subset_passes_jpegs_through(pbc_root: Path, tmp_path: Path) -> None:
    manifest = pd.read_csv(pbc_root / "manifest.csv").groupby("label").head(5)
    cat = hand_catalog(pbc_root, list(manifest["path"]), "folder:pbc_subset", list(manifest["label"]))
    cat["sha256"] = list(manifest["sha256"])
    index = pack(cat, tmp_path / "pbc", shard_size=12, progress=False)
    assert index["total_cells"] == 40 and index["extensions"] == {"jpg": 40}
    assert index["bytes_per_cell"] > 0
    cells = cells_by_id(tmp_path / "pbc")
    for row in cat.to_dict(orient="records"):
        assert cells[row["cell_id"]]["jpg"] == (pbc_root / row["path"]).read_bytes()


# ---------------------------------------------------------------------------------------- resume
def test_resume_after_crash_in_a_worker_equals_clean_pack(
    mixed_subset: pd.DataFrame, subset_pack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_dir, clean = subset_pack
    out = tmp_path / "crashed"
    real = shard_writer.encode_cell_image
    calls = {"n": 0}

    def flaky(row: dict, opts: dict):
        calls["n"] += 1
        if calls["n"] == 8 * 3 + 5:  # inside the fourth shard
            raise RuntimeError("simulated crash")
        return real(row, opts)

    monkeypatch.setattr(shard_writer, "encode_cell_image", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pack(mixed_subset, out, shard_size=8, workers=1, progress=False)
    finished = sorted(out.glob("cells-*.tar"))
    assert [p.name for p in finished] == ["cells-000000.tar", "cells-000001.tar", "cells-000002.tar"]
    assert list(out.glob(".cells-*.tmp")), "the partial shard is left under its temporary name"
    assert not (out / "index.json").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in finished}

    monkeypatch.setattr(shard_writer, "encode_cell_image", real)
    index = pack(mixed_subset, out, shard_size=8, workers=2, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in finished} == stamps, "finished shards were rewritten"
    assert not list(out.glob(".cells-*.tmp"))
    assert index["shards"] == clean["shards"]
    assert index["cells_packed_last_run"] == len(mixed_subset) - 3 * 8
    assert cells_by_id(out).keys() == cells_by_id(clean_dir).keys()


@pytest.mark.slow  # two CLI processes (~15 s wall on 2 shared cores)
def test_resume_after_sigkill_of_the_cli(pbc_root: Path, tmp_path: Path) -> None:
    manifest = pd.read_csv(pbc_root / "manifest.csv").groupby("label").head(20)  # 160 cells
    cat = hand_catalog(pbc_root, list(manifest["path"]), "folder:pbc_subset", list(manifest["label"]))
    cat_path = tmp_path / "catalog.parquet"
    write_catalog(cat, cat_path)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ssl_cyto", "pack", "--catalog", str(cat_path), "--out", str(out)]
    cmd += ["--shard-size", "4", "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "cells-000000.tar").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(list(out.glob("cells-*.tar")))
    assert 1 <= n_done < 40 and not (out / "index.json").exists()

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    resumed = json.loads((out / "index.json").read_text())
    assert resumed["cells_packed_last_run"] == 160 - 4 * n_done
    clean = pack(cat_path, tmp_path / "clean", shard_size=4, progress=False)
    assert resumed["shards"] == clean["shards"]
    assert resumed["total_cells"] == 160
    assert verify(out, progress=False)["ok"]


def test_rerun_with_other_options_is_refused(two_layout_catalog: pd.DataFrame, tmp_path: Path) -> None:
    small = two_layout_catalog.head(20)
    pack(small, tmp_path / "o", shard_size=8, progress=False)
    again = pack(small, tmp_path / "o", shard_size=8, progress=False)  # same options: fine (no-op)
    assert again["cells_packed_last_run"] == 0 and again["total_cells"] == 20
    with pytest.raises(PackOptionsMismatch, match="shard_size"):
        pack(small, tmp_path / "o", shard_size=10, progress=False)
    with pytest.raises(PackOptionsMismatch, match="catalog"):
        pack(two_layout_catalog.head(21), tmp_path / "o", shard_size=8, progress=False)


# -------------------------------------------------------------------------------- resize options
def test_target_um_per_px_resamples_known_sources_only(
    two_layout_catalog: pd.DataFrame, tmp_path: Path
) -> None:
    cat = pd.concat(
        [two_layout_catalog[two_layout_catalog.source == s].head(3) for s in ("aml-lmu", "bm-mll")]
    ).reset_index(drop=True)
    cat.loc[cat.source == "aml-lmu", "um_per_px"] = 0.1
    cat.loc[cat.source == "bm-mll", "um_per_px"] = np.nan
    with pytest.warns(UserWarning, match="bm-mll"):
        index = pack(cat, tmp_path / "r", shard_size=10, target_um_per_px=0.2, progress=False)
    assert any("bm-mll" in w for w in index["warnings"])
    cells = cells_by_id(tmp_path / "r")
    for row in cat.to_dict(orient="records"):
        orig = open_rgb(Path(row["root"]) / row["path"])
        parts = cells[row["cell_id"]]
        ext = "png" if "png" in parts else "jpg"
        got = Image.open(io.BytesIO(parts[ext]))
        if row["source"] == "aml-lmu":
            assert got.size == (round(orig.width / 2), round(orig.height / 2))
        else:
            assert got.size == orig.size and parts["jpg"] == (Path(row["root"]) / row["path"]).read_bytes()

    # a per-source override resamples the unknown source too
    index = pack(
        cat, tmp_path / "r2", shard_size=10, target_um_per_px=0.2, um_per_px={"bm-mll": 0.4}, progress=False
    )
    for row in cat[cat.source == "bm-mll"].to_dict(orient="records"):
        orig = open_rgb(Path(row["root"]) / row["path"])
        got = Image.open(io.BytesIO(cells_by_id(tmp_path / "r2")[row["cell_id"]]["png"]))
        assert got.size == (orig.width * 2, orig.height * 2)
    with pytest.raises(PackError, match="nope"):
        pack(cat, tmp_path / "r3", target_um_per_px=0.2, um_per_px={"nope": 1.0}, progress=False)


def test_image_size_reencodes_everything(two_layout_catalog: pd.DataFrame, tmp_path: Path) -> None:
    cat = two_layout_catalog.groupby("source").head(3)
    index = pack(cat, tmp_path / "s", shard_size=4, image_size=32, fmt="jpg", progress=False)
    assert index["extensions"] == {"jpg": 6}
    for parts in cells_by_id(tmp_path / "s").values():
        img = Image.open(io.BytesIO(parts["jpg"]))
        assert min(img.size) == 32 and img.mode == "RGB"
