"""ssl_cyto.embedding.embed: every cell once in cell_id order, resume after an interruption, model refusal,
reproducible random weights, shards and folders giving the same vectors (CPU, tiny_cnn, 30 cells)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.cli import main as cli_main
from ssl_cyto.embedding import ModelMismatchError, embed

MODEL = "tiny_cnn"  # seeded random weights; 96 px inputs


class Interrupt(RuntimeError):
    pass


@pytest.fixture(scope="module")
def full_run(synth_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emb") / "full"
    return embed(MODEL, synth_folder, out, batch_size=8, progress=False)


def test_every_cell_once_sorted_and_aligned(full_run: Path, synth_folder: Path) -> None:
    from ssl_cyto.data.scanning import catalog_from_path
    from ssl_cyto.formats.catalog import CATALOG_COLUMNS
    from ssl_cyto.models.weights import eval_transform_from_meta, load_backbone_folder

    cat = catalog_from_path(synth_folder)
    emb = np.load(full_run / "embeddings.npy")
    cells = pd.read_parquet(full_run / "cells.parquet")
    assert list(cells.columns) == [*CATALOG_COLUMNS, "phash"]  # + the image hash (embed's, for a folder)
    assert cells["phash"].str.fullmatch("[0-9a-f]{16}").all()
    assert (full_run / "image_hashes.parquet").is_file()  # kept for probe and dedup
    assert emb.dtype == np.float32 and emb.shape[0] == len(cells) == len(cat)
    assert cells["cell_id"].tolist() == sorted(cat["cell_id"].tolist())  # each once, sorted
    info = json.loads((full_run / "embed.json").read_text())
    assert info["counts"]["cells"] == len(cat) and info["order"].startswith("rows sorted by cell_id")
    assert (full_run / "model.json").exists() and (full_run / "backbone" / "weights.pt").exists()
    # row i really is the embedding of cell i: re-embed three cells one by one
    import torch

    from ssl_cyto.data.images import open_rgb

    module, meta = load_backbone_folder(str(full_run / "backbone"))
    tf = eval_transform_from_meta(meta)
    for i in (0, len(cells) // 2, len(cells) - 1):
        row = cells.iloc[i]
        with torch.no_grad():
            v = module(tf(open_rgb(Path(row["root"]) / row["path"]))[None]).numpy()[0]
        np.testing.assert_allclose(emb[i], v, rtol=1e-4, atol=1e-5)


def test_embed_json_records_where_the_cells_are(full_run: Path, synth_folder: Path) -> None:
    """New in the redesign: ``data_path``/``shards``/``roots`` let ``serve`` find the cell images."""
    info = json.loads((full_run / "embed.json").read_text())
    assert info["data"] == str(synth_folder) and info["data_path"] == str(synth_folder.resolve())
    assert info["shards"] is None
    roots = sorted(set(pd.read_parquet(full_run / "cells.parquet")["root"]))
    assert info["roots"] == roots and all(Path(r).is_dir() for r in roots)


def test_resume_after_interruption(full_run: Path, synth_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb"
    written: list[int] = []

    def stop_after_two(chunk: int) -> None:
        written.append(chunk)
        if len(written) == 2:
            raise Interrupt("simulated kill")

    with pytest.raises(Interrupt):
        embed(
            MODEL, synth_folder, out, batch_size=4, chunk_batches=1, progress=False, on_chunk=stop_after_two
        )
    assert sorted(p.name for p in (out / ".partial").glob("chunk-*.npy")) == [
        "chunk-00000.npy",
        "chunk-00001.npy",
    ]
    assert not (out / "embeddings.npy").exists()
    embed(MODEL, synth_folder, out, batch_size=4, chunk_batches=1, progress=False)
    info = json.loads((out / "embed.json").read_text())
    assert info["counts"]["resumed_from_chunks"] == 8
    assert info["counts"]["embedded_this_run"] == info["counts"]["cells"] - 8
    assert not (out / ".partial").exists()
    a = pd.read_parquet(out / "cells.parquet")
    b = pd.read_parquet(full_run / "cells.parquet")
    assert a["cell_id"].tolist() == b["cell_id"].tolist()
    np.testing.assert_allclose(
        np.load(out / "embeddings.npy"), np.load(full_run / "embeddings.npy"), rtol=1e-4, atol=1e-5
    )


def test_other_model_refused_unless_overwrite(full_run: Path, synth_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb"

    def stop(chunk: int) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        embed(MODEL, synth_folder, out, batch_size=4, chunk_batches=1, progress=False, on_chunk=stop)
    with pytest.raises(ModelMismatchError, match="partial embedding of another model"):
        embed(MODEL, synth_folder, out, seed=1, progress=False)
    embed(MODEL, synth_folder, out, seed=1, overwrite=True, progress=False)
    with pytest.raises(ModelMismatchError, match="--overwrite"):
        embed(MODEL, synth_folder, out, seed=0, progress=False)
    # the same model and data again: nothing to do, same files
    before = (out / "embeddings.npy").stat().st_mtime_ns
    embed(MODEL, synth_folder, out, seed=1, progress=False)
    assert (out / "embeddings.npy").stat().st_mtime_ns == before


def test_random_weights_reproducible_with_seed(full_run: Path, synth_folder: Path, tmp_path: Path) -> None:
    same = embed(MODEL, synth_folder, tmp_path / "same", batch_size=16, progress=False)
    other = embed(MODEL, synth_folder, tmp_path / "other", seed=1, batch_size=16, progress=False)
    sha = [json.loads((d / "model.json").read_text())["weights_sha256"] for d in (full_run, same, other)]
    assert sha[0] == sha[1] != sha[2]
    np.testing.assert_allclose(
        np.load(same / "embeddings.npy"), np.load(full_run / "embeddings.npy"), rtol=1e-4, atol=1e-5
    )
    assert not np.allclose(np.load(other / "embeddings.npy"), np.load(full_run / "embeddings.npy"))


def test_shards_give_the_same_cells_and_vectors(full_run: Path, synth_folder: Path, tmp_path: Path) -> None:
    from ssl_cyto.data.packing import pack

    shards = tmp_path / "shards"
    pack(synth_folder, shards, shard_size=7, progress=False)
    out = embed(MODEL, shards, tmp_path / "emb", batch_size=5, chunk_batches=2, progress=False)
    a, b = pd.read_parquet(out / "cells.parquet"), pd.read_parquet(full_run / "cells.parquet")
    assert a["cell_id"].tolist() == b["cell_id"].tolist()
    np.testing.assert_allclose(
        np.load(out / "embeddings.npy"), np.load(full_run / "embeddings.npy"), rtol=1e-4, atol=1e-5
    )
    assert json.loads((out / "embed.json").read_text())["shards"] == str(shards.resolve())
    limited = embed(MODEL, shards, tmp_path / "lim", limit=12, batch_size=5, progress=False)
    assert len(pd.read_parquet(limited / "cells.parquet")) == 12


def test_cli_reports_mismatch(full_run: Path, synth_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["embed", "--model", MODEL, "--data", str(synth_folder), "--out", str(full_run), "--seed", "3"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "another model" in err and "Traceback" not in err
    argv = ["embed", "--model", str(full_run / "nope"), "--data", str(synth_folder), "--out", str(full_run)]
    assert cli_main(argv) == 2
    assert "nope" in capsys.readouterr().err


def test_cli_summary_line(full_run: Path, synth_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["embed", "--model", MODEL, "--data", str(synth_folder), "--out", str(full_run)]
    assert cli_main(argv) == 0  # complete with this model and data: nothing to do
    assert capsys.readouterr().out.startswith(f"wrote {full_run}: ")
