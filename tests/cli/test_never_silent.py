"""Issue 14, "never silent": each item reproduced through the entry point, in a subprocess.

Each test runs ``python -m ssl_cyto ...`` as a user would (stderr a pipe, not a terminal) and checks
the exit status, that an error is one line naming the file and the fix with no traceback, and that
no other work is lost. Unwritable paths are under /proc (tests run as root). Items 5 (probe
--min-cells), 8 (fit) and the umap/probe checks are tested with those commands.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.cli.never_silent_support import cli, copy_cells, env, write_odd_images
from tests.models.hub_support import fake_hub


@pytest.fixture(scope="module")
def shards(synth_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 generated cells packed in-process into 4 shards of 8."""
    from ssl_cyto.data.packing import pack

    out = tmp_path_factory.mktemp("ns") / "shards"
    pack(synth_folder, out, shard_size=8, progress=False)
    return out


@pytest.fixture(scope="module")
def emb(shards: Path) -> Path:
    """An embedding folder (tiny_cnn, random weights) with a flat index, made in-process."""
    from ssl_cyto.embedding.runner import embed
    from ssl_cyto.retrieval.index_io import build_index

    out = embed("tiny_cnn", shards, shards.parent / "emb", progress=False)
    build_index(out, progress=False)
    return out


# ------------------------------------------------------------------------------------------ item 1
def test_embed_counts_the_cells_of_a_truncated_shard(shards: Path, tmp_path: Path) -> None:
    bad = tmp_path / "shards_bad"
    shutil.copytree(shards, bad)
    tar = bad / "cells-000001.tar"
    os.truncate(tar, tar.stat().st_size // 2)
    r = cli("embed", "--model", "tiny_cnn", "--data", bad, "--out", tmp_path / "e")
    assert r.rc == 3, r.err
    assert "Traceback" not in r.err and "UserWarning" not in r.err
    n = len(pd.read_parquet(tmp_path / "e" / "cells.parquet"))
    assert 0 < n < 30
    assert f"{n} of 30 cells" in r.out
    missing = pd.read_csv(tmp_path / "e" / "missing.csv")
    assert int(missing["cells"].sum()) == 30 - n
    assert f"warning: {30 - n} of 30 cells not embedded (listed in {tmp_path / 'e' / 'missing.csv'})" in r.err
    assert "--allow-missing" in r.err
    # random weights said once, plainly, with the option that changes it (item 2)
    assert r.err.count("RANDOM weights") == 1 and "--weights FILE" in r.err
    # no terminal: progress is plain lines with rate and ETA (minor item)
    assert "\r" not in r.err and "cell/s" in r.err and "ETA" in r.err
    again = cli("embed", "--model", "tiny_cnn", "--data", bad, "--out", tmp_path / "e", "--allow-missing")
    assert again.rc == 0, again.err
    assert f"{30 - n} of 30 cells not embedded" in again.err and "exit status 3" not in again.err


def test_embed_says_n_of_m_with_one_bad_image_and_pack_skips_it(synth_folder: Path, tmp_path: Path) -> None:
    folder = copy_cells(synth_folder, tmp_path / "cells", n_per_class=2)
    (folder / "neutrophil").mkdir(exist_ok=True)
    (folder / "neutrophil" / "broken.jpg").write_bytes(b"not a jpeg at all")
    total = sum(1 for _ in folder.rglob("*.*"))
    r = cli("embed", "--model", "tiny_cnn", "--data", folder, "--out", tmp_path / "e")
    assert r.rc == 3, r.err
    assert f"{total - 1} of {total} cells" in r.out
    missing = (tmp_path / "e" / "missing.csv").read_text()
    assert "broken.jpg" in missing
    assert "BytesIO" not in missing and "object at 0x" not in missing  # minor: a real name
    # pack, whose job is to filter undecodable files, exits 0 and says how many and where
    p = cli("pack", "--catalog", folder, "--out", tmp_path / "shards", "--quiet")
    assert p.rc == 0, p.err
    assert f"skipped 1 of {total}" in p.out and "index.json" in p.out
    assert "broken.jpg" in p.err and "BytesIO" not in p.err


# ------------------------------------------------------------------------------------------ item 2
@pytest.mark.parametrize("name", ["resnet18.a1_in1k", "hf-hub:test/not_cached"])
def test_released_weights_not_in_the_cache_stop_in_one_line(
    name: str, shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hub(tmp_path, monkeypatch)  # an empty cache, HF_HUB_OFFLINE=1
    t0 = time.monotonic()
    r = cli("embed", "--model", name, "--data", shards, "--out", tmp_path / "e")
    assert time.monotonic() - t0 < 10, "bounded: stops within seconds"
    assert r.rc == 2
    line = r.one_error_line()
    assert name in line and "HF_HUB_OFFLINE=1" in line and "not in the cache" in line
    assert "hf auth login" in line and "HF_HOME" in line and "--weights FILE" in line  # the ways out
    assert not (tmp_path / "e").exists(), "refused before any work"


def test_weights_files_safe_by_default(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from ssl_cyto.models.factory import build_backbone

    module, _ = build_backbone("tiny_cnn")
    torch.save(module.state_dict(), tmp_path / "mine.pt")
    ok = cli(
        "embed",
        "--model",
        "tiny_cnn",
        "--weights",
        tmp_path / "mine.pt",
        "--data",
        shards,
        "--out",
        tmp_path / "w",
    )
    assert ok.rc == 0, ok.err
    assert "RANDOM" not in ok.err and "random weights" not in ok.out
    model = json.loads((tmp_path / "w" / "model.json").read_text())
    assert model["random_init"] is False and model["weights_source"] == str((tmp_path / "mine.pt").resolve())
    assert model["source"]["file_sha256"] and model["format_version"] == 2
    # a pickle that needs weights_only=False (it could run code) is refused unless --trust-weights
    from ssl_cyto.cli import main as cli_main

    torch.save({**module.state_dict(), "extra": _Opaque()}, tmp_path / "pickle.pt")
    args = ["embed", "--model", "tiny_cnn", "--weights", str(tmp_path / "pickle.pt"), "--data", str(shards)]
    assert cli_main([*args, "--out", str(tmp_path / "p")]) == 2  # in-process: the same guard, one line
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error: ")]
    assert len(line) == 1 and "--trust-weights" in line[0] and "weights_only" in line[0]


class _Opaque:
    """An object torch.load(weights_only=True) refuses."""


def test_gallery_title_says_random_weights(
    emb: Path, synth_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    from ssl_cyto.retrieval import search

    titles: list[str] = []
    monkeypatch.setattr(search, "save_gallery", lambda rows, out, title=None: titles.append(str(title)))
    image = next(synth_folder.rglob("*.png"))
    search.query([image], emb, k=3, gallery=tmp_path / "g.png")
    assert titles and "tiny_cnn, random weights" in titles[0]


# ------------------------------------------------------------------------------------------ item 3
def test_symlink_loops_are_walked_once(synth_folder: Path, tmp_path: Path) -> None:
    folder = copy_cells(synth_folder, tmp_path / "cells", n_per_class=2)
    os.symlink("..", folder / "neutrophil" / "loop")  # a loop
    os.symlink(folder / "monocyte", folder / "monocyte_again")  # the same real folder twice
    os.symlink(tmp_path / "gone", folder / "dangling.png")  # a broken link
    r = cli("data", "scan", f"folder:mine={folder}", "--out", tmp_path / "c.parquet")
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    cat = pd.read_parquet(tmp_path / "c.parquet")
    assert len(cat) == 10, "each real image once"
    assert "walked once" in r.out and "broken symlink" in r.out


# ------------------------------------------------------------------------------------------ item 4
def test_outputs_are_checked_before_any_work(
    emb: Path, shards: Path, synth_folder: Path, tmp_path: Path
) -> None:
    image = next(synth_folder.rglob("*.png"))
    q = cli("query", image, "--index", emb, "--gallery", "/proc/x/g.png")
    assert q.rc == 2
    line = q.one_error_line()
    assert "cannot create /proc/x/g.png (--gallery)" in line and "choose" in line
    assert q.out == "", "checked before the neighbours were computed"
    e = cli("embed", "--model", "tiny_cnn", "--data", shards, "--out", "/proc/x/emb")
    assert e.rc == 2 and "cannot create /proc/x/emb (--out)" in e.one_error_line()
    s = cli(
        "data",
        "scan",
        f"folder={synth_folder}",
        "--out",
        "/proc/x/c.parquet",
        "--problems",
        tmp_path / "p.txt",
    )
    assert s.rc == 2 and "cannot create /proc/x/c.parquet (--out)" in s.one_error_line()


# ------------------------------------------------------------------------------------------ item 6
def test_pack_never_overwrites_a_users_index_json(synth_folder: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.json").write_text('{"my": "own index"}')
    (mine / "notes.txt").write_text("keep me")
    r = cli("pack", "--catalog", synth_folder, "--out", mine, "--quiet")
    assert r.rc == 2
    line = r.one_error_line()
    assert "index.json not written by pack" in line and "new or empty --out" in line
    assert json.loads((mine / "index.json").read_text()) == {"my": "own index"}
    assert not (mine / ".pack").exists(), "a refused pack leaves no .pack/"
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "cells-000000.tar").write_bytes(b"")
    r2 = cli("pack", "--catalog", synth_folder, "--out", stray, "--quiet")
    assert r2.rc == 2 and "without pack state" in r2.one_error_line()
    assert not (stray / ".pack").exists()


# ------------------------------------------------------------------------------------------ item 7
def test_degenerate_images_are_counted_at_pack_verify_and_embed(synth_folder: Path, tmp_path: Path) -> None:
    folder = copy_cells(synth_folder, tmp_path / "cells", n_per_class=1)
    write_odd_images(folder)
    out = tmp_path / "shards"
    p = cli("pack", "--catalog", folder, "--out", out, "--quiet")
    assert p.rc == 0, p.err
    assert "warning: 2 image(s) with a side under 16 px or over 4096 px" in p.err and "odd_size" in p.err
    index = json.loads((out / "index.json").read_text())
    assert sorted(Path(r["path"]).name for r in index["odd_size"]) == ["dot.png", "slide.png"]
    v = cli("pack", "--verify", out, "--quiet")
    assert v.rc == 0 and "warning: 2 image(s)" in v.err
    e = cli("embed", "--model", "tiny_cnn", "--data", out, "--out", tmp_path / "e")
    assert e.rc == 0, e.err
    assert "warning: 2 image(s) with a side under 16 px or over 4096 px were embedded" in e.err


# ------------------------------------------------------------------------------------------ item 9
def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    r = cli("data", "scan", f"folder={tmp_path / 'empty'}", "--out", tmp_path / "c.parquet")
    assert r.rc == 2
    line = r.one_error_line()
    assert str(tmp_path / "empty") in line and "no images found" in line and "check the path" in line
    assert not (tmp_path / "c.parquet").exists()


# ------------------------------------------------------------------------------------------ minor items
def test_one_bad_query_image_does_not_abort_the_batch(emb: Path, synth_folder: Path, tmp_path: Path) -> None:
    good = next(synth_folder.rglob("*.png"))
    bad = tmp_path / "mine.png"
    bad.write_bytes(b"\x89PNG but not really")
    r = cli("query", good, bad, "--index", emb, "-k", "3")
    assert r.rc == 3 and "Traceback" not in r.err
    assert f"query: {good}\n" in r.out and "rank" in r.out, "the good query's table is printed"
    assert "warning: 1 of 2 query images not processed" in r.err and "--allow-missing" in r.err
    assert "mine.png" in r.err
    assert "re-download" not in r.err and "BytesIO" not in r.err  # a user's own image
    j = cli("query", good, bad, "--index", emb, "-k", "3", "--json", "--allow-missing")
    assert j.rc == 0
    results = json.loads(j.out)
    assert len(results[0]["neighbours"]) == 3 and results[1]["neighbours"] == [] and "error" in results[1]


def test_ivfpq_says_when_it_lowers_nbits(emb: Path, tmp_path: Path) -> None:
    r = cli("index", "build", emb, "--kind", "ivfpq", "--out", tmp_path / "pq.faiss")
    assert r.rc == 0, r.err
    assert "note: ivfpq: nbits lowered from 8 to" in r.err and "--kind flat" in r.err
    assert r.err.count("WARNING clustering") <= 1, "no FAISS warning per PQ sub-quantiser"
    assert json.loads((tmp_path / "pq.faiss.json").read_text())["notes"]


def test_index_build_hint_does_not_write_into_the_shards(shards: Path) -> None:
    r = cli("index", "build", shards)
    assert r.rc == 2
    line = r.one_error_line()
    assert "is a shard folder" in line and f"--data {shards} --out emb/" in line
    assert f"--out {shards}" not in line


def test_gallery_has_a_legend_of_its_frame_colours(synth_folder: Path) -> None:
    from ssl_cyto.retrieval.gallery import LEGEND, Tile, render_gallery

    image = next(synth_folder.rglob("*.png"))
    fig = render_gallery([(Tile(image, "q", "#1f5fbf"), [Tile(image, "n", "#2a9d3a")])], title="t")
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == [text for _, text in LEGEND]


def test_ctrl_c_stops_embed_and_its_workers_and_the_rerun_resumes(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "e"
    cmd = [sys.executable, "-m", "ssl_cyto", "embed", "--model", "resnet18", "--data", str(shards), "--out", str(out),
           "--workers", "2", "--batch-size", "2", "--chunk-batches", "1", "--device", "cpu"]  # fmt: skip
    p = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while (
            not list((out / ".partial").glob("chunk-*.npy"))
            and time.monotonic() < deadline
            and p.poll() is None
        ):
            time.sleep(0.05)
        assert p.poll() is None, "embed finished before it could be interrupted"
        os.killpg(p.pid, signal.SIGINT)  # the whole process group, as Ctrl-C does: loader workers too
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 130, err
    assert "Traceback" not in err and "rerun the same command to resume" in err
    again = cli("embed", *cmd[4:])
    assert again.rc == 0, again.err
    resumed = int(again.out.split(" resumed)")[0].rsplit(", ", 1)[1])
    assert resumed > 0, again.out
    assert len(pd.read_parquet(out / "cells.parquet")) == 30
