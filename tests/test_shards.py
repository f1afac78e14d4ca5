"""Packing cells into WebDataset shards: read-back, skipping bad files, conversion, resume, verify, CLI."""

from __future__ import annotations

import io
import json
import os
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

from ssl_cyto.data import shards as sh
from ssl_cyto.data.images import open_rgb

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- helpers
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


def cells_by_id(shard_dir: Path) -> dict[str, dict[str, bytes]]:
    samples = read_shards(shard_dir)
    by_id = {}
    for key, parts in samples.items():
        row = json.loads(parts["json"])
        assert sh.cell_key(row["cell_id"]) == key
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


@pytest.fixture(scope="module")
def two_layout_catalog(synth_aml: Path, synth_bm: Path) -> pd.DataFrame:
    from ssl_cyto.data.catalog import scan

    return scan([("aml-lmu", str(synth_aml)), ("bm-mll", str(synth_bm))])


@pytest.fixture(scope="module")
def mixed_subset(two_layout_catalog: pd.DataFrame) -> pd.DataFrame:
    """20 random cells of each layout (RGBA TIFF and JPEG)."""
    return two_layout_catalog.groupby("source").sample(n=20, random_state=0).reset_index(drop=True)


def run_cli(argv: list[str]) -> int:
    """``ssl-cyto pack ARGV`` through the module's own parser and main."""
    import argparse

    parser = argparse.ArgumentParser()
    sh.add_arguments(parser)
    return sh.main(parser.parse_args(argv))


@pytest.fixture(scope="module")
def two_layout_pack(
    two_layout_catalog: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("packed") / "shards"
    index = sh.pack(two_layout_catalog, out, shard_size=16, workers=2, progress=False)
    return out, index


# ------------------------------------------------------------------------------------------- keys
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
    keys = [sh.cell_key(i) for i in ids]
    assert len(set(keys)) == len(ids)
    for i, k in zip(ids, keys, strict=True):
        assert "." not in k and "/" not in k
        assert sh.key_to_cell_id(k) == i


# ------------------------------------------------------------------------------- pack and verify
def test_pack_both_layouts_reads_back_exactly(two_layout_catalog: pd.DataFrame, two_layout_pack) -> None:
    out, index = two_layout_pack
    cat = two_layout_catalog
    assert index["total_cells"] == len(cat) and not index["skipped"]
    assert index["sources"] == cat["source"].value_counts().sort_index().to_dict()
    assert index["classes"] == cat["label"].value_counts().sort_index().to_dict()
    assert sh.verify(out, decode=True, progress=False)["ok"]

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
    return out, sh.pack(mixed_subset, out, shard_size=8, workers=1, progress=False)


def test_pack_result_does_not_depend_on_workers(
    mixed_subset: pd.DataFrame, subset_pack, tmp_path: Path
) -> None:
    _, index1 = subset_pack  # workers=1
    index2 = sh.pack(mixed_subset, tmp_path / "w2", shard_size=8, workers=2, progress=False)
    assert [s["sha256"] for s in index1["shards"]] == [s["sha256"] for s in index2["shards"]]
    other_seed = sh.pack(mixed_subset.head(8), tmp_path / "s1", shard_size=4, seed=1, progress=False)
    same_seed = sh.pack(mixed_subset.head(8), tmp_path / "s0", shard_size=4, seed=0, progress=False)
    assert [s["sha256"] for s in other_seed["shards"]] != [s["sha256"] for s in same_seed["shards"]]


def test_pack_pbc_subset_passes_jpegs_through(pbc_root: Path, tmp_path: Path) -> None:
    manifest = pd.read_csv(pbc_root / "manifest.csv").groupby("label").head(5)
    cat = hand_catalog(pbc_root, list(manifest["path"]), "folder:pbc_subset", list(manifest["label"]))
    cat["sha256"] = list(manifest["sha256"])
    index = sh.pack(cat, tmp_path / "pbc", shard_size=12, progress=False)
    assert index["total_cells"] == 40 and index["extensions"] == {"jpg": 40}
    assert index["bytes_per_cell"] > 0
    cells = cells_by_id(tmp_path / "pbc")
    for row in cat.to_dict(orient="records"):
        assert cells[row["cell_id"]]["jpg"] == (pbc_root / row["path"]).read_bytes()


def test_bad_files_are_skipped_and_odd_images_converted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    save(rgb_noise(0), src / "good.png")
    save(rgb_noise(1), src / "good.jpg", quality=90)
    jpeg = (src / "good.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (src / "empty.jpg").write_bytes(b"")
    (src / "garbage.png").write_bytes(b"this is not an image" * 20)
    grey = np.arange(24 * 20, dtype=np.uint8).reshape(24, 20)
    save(Image.fromarray(grey, mode="L"), src / "grey.png")
    g16 = (np.arange(24 * 20, dtype=np.uint16) * 137).reshape(24, 20)
    save(Image.fromarray(g16), src / "grey16.png")
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, :6, 3] = 255  # left half opaque red, right half transparent -> white
    save(Image.fromarray(rgba, mode="RGBA"), src / "alpha.png")
    save(Image.fromarray(grey, mode="L"), src / "grey.jpg")  # grey JPEG: converted, not passed through
    files = sorted(p.name for p in src.iterdir()) + ["missing.jpg"]
    cat = hand_catalog(src, files)
    cat.loc[cat["path"] == "good.png", "sha256"] = "0" * 64  # wrong checksum -> skipped too

    index = sh.pack(cat, tmp_path / "out", shard_size=4, progress=False)
    skipped = {Path(s["path"]).name: s["reason"] for s in index["skipped"]}
    assert set(skipped) == {"truncated.jpg", "empty.jpg", "garbage.png", "missing.jpg", "good.png"}
    assert "empty" in skipped["empty.jpg"] and "not found" in skipped["missing.jpg"]
    assert "sha256" in skipped["good.png"]
    assert all(str(src) in s["path"] for s in index["skipped"])
    assert index["total_cells"] == len(files) - 5
    assert sh.verify(tmp_path / "out", decode=True, progress=False)["ok"]

    cells = {Path(c).name: v for c, v in cells_by_id(tmp_path / "out").items()}
    assert cells["good.jpg"]["jpg"] == jpeg
    for name in ("grey.png", "grey16.png", "alpha.png", "grey.jpg"):
        assert set(cells[name]) == {"png", "json", "row"}, name
    g = np.asarray(Image.open(io.BytesIO(cells["grey.png"]["png"])))
    assert g.shape == (24, 20, 3) and np.array_equal(g[..., 1], grey)
    g16_back = np.asarray(Image.open(io.BytesIO(cells["grey16.png"]["png"])))
    assert g16_back.dtype == np.uint8 and g16_back.shape == (24, 20, 3)
    assert np.array_equal(g16_back[..., 0], np.round(g16 / 65535 * 255).astype(np.uint8))
    a = np.asarray(Image.open(io.BytesIO(cells["alpha.png"]["png"])))
    assert a[0, 0].tolist() == [200, 0, 0] and a[0, -1].tolist() == [255, 255, 255]


# ---------------------------------------------------------------------------------------- resume
def test_resume_after_crash_in_a_worker_equals_clean_pack(
    mixed_subset: pd.DataFrame, subset_pack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_dir, clean = subset_pack
    out = tmp_path / "crashed"
    real = sh.encode_cell
    calls = {"n": 0}

    def flaky(row: dict, opts: dict):
        calls["n"] += 1
        if calls["n"] == 8 * 3 + 5:  # inside the fourth shard
            raise RuntimeError("simulated crash")
        return real(row, opts)

    monkeypatch.setattr(sh, "encode_cell", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        sh.pack(mixed_subset, out, shard_size=8, workers=1, progress=False)
    finished = sorted(out.glob("cells-*.tar"))
    assert [p.name for p in finished] == ["cells-000000.tar", "cells-000001.tar", "cells-000002.tar"]
    assert list(out.glob(".cells-*.tmp")), "the partial shard is left under its temporary name"
    assert not (out / "index.json").exists()
    stamps = {p.name: p.stat().st_mtime_ns for p in finished}

    monkeypatch.setattr(sh, "encode_cell", real)
    index = sh.pack(mixed_subset, out, shard_size=8, workers=2, progress=False)
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
    from ssl_cyto.data.catalog import write_catalog

    write_catalog(cat, cat_path)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ssl_cyto.data.shards", "--catalog", str(cat_path), "--out", str(out)]
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
    clean = sh.pack(cat_path, tmp_path / "clean", shard_size=4, progress=False)
    assert resumed["shards"] == clean["shards"]
    assert resumed["total_cells"] == 160
    assert sh.verify(out, progress=False)["ok"]


def test_rerun_with_other_options_is_refused(two_layout_catalog: pd.DataFrame, tmp_path: Path) -> None:
    small = two_layout_catalog.head(20)
    sh.pack(small, tmp_path / "o", shard_size=8, progress=False)
    again = sh.pack(small, tmp_path / "o", shard_size=8, progress=False)  # same options: fine (no-op)
    assert again["cells_packed_last_run"] == 0 and again["total_cells"] == 20
    with pytest.raises(sh.PackOptionsMismatch, match="shard_size"):
        sh.pack(small, tmp_path / "o", shard_size=10, progress=False)
    with pytest.raises(sh.PackOptionsMismatch, match="catalog"):
        sh.pack(two_layout_catalog.head(21), tmp_path / "o", shard_size=8, progress=False)


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
        index = sh.pack(cat, tmp_path / "r", shard_size=10, target_um_per_px=0.2, progress=False)
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
    index = sh.pack(
        cat, tmp_path / "r2", shard_size=10, target_um_per_px=0.2, um_per_px={"bm-mll": 0.4}, progress=False
    )
    for row in cat[cat.source == "bm-mll"].to_dict(orient="records"):
        orig = open_rgb(Path(row["root"]) / row["path"])
        got = Image.open(io.BytesIO(cells_by_id(tmp_path / "r2")[row["cell_id"]]["png"]))
        assert got.size == (orig.width * 2, orig.height * 2)
    with pytest.raises(sh.PackError, match="nope"):
        sh.pack(cat, tmp_path / "r3", target_um_per_px=0.2, um_per_px={"nope": 1.0}, progress=False)


def test_image_size_reencodes_everything(two_layout_catalog: pd.DataFrame, tmp_path: Path) -> None:
    cat = two_layout_catalog.groupby("source").head(3)
    index = sh.pack(cat, tmp_path / "s", shard_size=4, image_size=32, fmt="jpg", progress=False)
    assert index["extensions"] == {"jpg": 6}
    for parts in cells_by_id(tmp_path / "s").values():
        img = Image.open(io.BytesIO(parts["jpg"]))
        assert min(img.size) == 32 and img.mode == "RGB"


# ------------------------------------------------------------------------------- verify and CLI
def test_verify_names_the_broken_shard(two_layout_catalog: pd.DataFrame, tmp_path: Path) -> None:
    out = tmp_path / "v"
    sh.pack(two_layout_catalog.head(24), out, shard_size=8, progress=False)
    assert run_cli(["--verify", str(out), "--quiet"]) == 0
    data = bytearray((out / "cells-000001.tar").read_bytes())
    data[700] ^= 0xFF
    (out / "cells-000001.tar").write_bytes(bytes(data))
    (out / "cells-000002.tar").unlink()
    report = sh.verify(out, progress=False)
    assert not report["ok"]
    assert any(p.startswith("cells-000001.tar: sha256") for p in report["problems"])
    assert any(p.startswith("cells-000002.tar: missing") for p in report["problems"])
    assert run_cli(["--verify", str(out), "--quiet"]) == 1


def test_cli_pack_from_parquet_and_errors(two_layout_catalog: pd.DataFrame, tmp_path: Path, capsys) -> None:
    from ssl_cyto.data.catalog import write_catalog

    cat_path = write_catalog(two_layout_catalog.head(10), tmp_path / "catalog.parquet")
    out = tmp_path / "cli"
    assert run_cli(["--catalog", str(cat_path), "--out", str(out), "--shard-size", "4", "--quiet"]) == 0
    assert "packed 10 cells into 3 shard(s)" in capsys.readouterr().out
    index = json.loads((out / "index.json").read_text())
    assert [s["count"] for s in index["shards"]] == [4, 4, 2]
    assert run_cli(["--catalog", str(cat_path), "--out", str(out), "--shard-size", "5", "--quiet"]) == 2
    assert "other options" in capsys.readouterr().err
    assert run_cli(["--catalog", str(tmp_path / "nope.parquet"), "--out", str(out)]) == 2
    assert run_cli(["--catalog", str(cat_path), "--out", str(tmp_path / "x"), "--um-per-px", "bad"]) == 2
    assert "SOURCE=X" in capsys.readouterr().err


def test_shards_module_imports_only_the_standard_library() -> None:
    code = (
        "import sys, ssl_cyto.data.shards, ssl_cyto.data.datamodule; "
        "heavy = [m for m in ('torch', 'numpy', 'pandas', 'PIL', 'webdataset', 'pytorch_lightning') "
        "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=os.environ
    )
    assert res.returncode == 0, res.stdout + res.stderr
