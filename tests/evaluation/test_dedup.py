"""``dedup``: planted near-copies in generated cells are all found, and nothing else, at the default threshold.

The default threshold (30 of 256 bits) was set on seed 0 as the midpoint between the farthest planted
copy (18 bits: cropped 6%, flipped and re-encoded) and the closest unrelated candidate pair (42 bits);
seed 1 is the held-out check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.data.image_hash import hash_distance, image_hash
from ssl_cyto.embedding.runner import embed
from ssl_cyto.evaluation.dedup import (
    DEFAULT_THRESHOLD,
    find_near_duplicates,
    folds_leakage,
    leakage_warning,
)
from ssl_cyto.evaluation.dedup_sheet import write_dedup_outputs
from tests.evaluation.planted import EDITS, planted_tree


def _planted_emb(base: Path, seed: int) -> tuple[Path, set[frozenset[str]]]:
    tree, planted = planted_tree(base, seed)
    emb = embed("colour_hist", tree, base / "emb", progress=False)
    cells = pd.read_parquet(emb / "cells.parquet")
    prefix = cells["cell_id"].iloc[0].split("/", 1)[0]
    return emb, {frozenset((f"{prefix}/{a}", f"{prefix}/{b}")) for a, b in planted}


@pytest.fixture(scope="module", params=[0, 1], ids=["seed0-tuning", "seed1-held-out"])
def planted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return (request.param, *_planted_emb(tmp_path_factory.mktemp(f"planted{request.param}"), request.param))


def _found(pairs: pd.DataFrame) -> set[frozenset[str]]:
    return {frozenset((a, b)) for a, b in zip(pairs["cell_id_a"], pairs["cell_id_b"], strict=True)}


def test_all_planted_copies_found_and_no_false_pair(planted) -> None:
    seed, emb, want = planted
    assert len(want) == 2 * len(EDITS)
    res = find_near_duplicates(emb, progress=False)
    assert _found(res.pairs) == want
    assert (res.pairs["hash_distance"] <= DEFAULT_THRESHOLD).all()
    assert set(res.pairs["scope"]) == {"within source"}
    if seed == 0:  # how the default was chosen: it separates the planted pairs from every other candidate
        everything = find_near_duplicates(emb, threshold=256, progress=False).pairs
        pairs = zip(everything["cell_id_a"], everything["cell_id_b"], strict=True)
        is_planted = np.array([frozenset(p) in want for p in pairs])
        d = everything["hash_distance"].to_numpy()
        assert is_planted.sum() == len(want)
        assert d[is_planted].max() < DEFAULT_THRESHOLD < d[~is_planted].min()


def test_scopes_splits_sheet_and_probe_leakage(planted, tmp_path: Path) -> None:
    seed, emb, want = planted
    if seed:
        pytest.skip("one seed is enough for the bookkeeping")
    cells = pd.read_parquet(emb / "cells.parquet")
    copies = cells["path"].str.contains("_(?:" + "|".join(EDITS) + r")\.", regex=True)
    # the copies become a second source; the originals go to train, the copies to test
    cells.loc[copies, "source"] = "folder:copies"
    cells.to_parquet(emb / "cells.parquet", index=False)
    pd.DataFrame(
        {"cell_id": cells["cell_id"], "split": np.where(copies, "test", "train"), "seed": 0}
    ).to_parquet(emb / "split.parquet", index=False)
    res = find_near_duplicates(emb, progress=False)
    assert _found(res.pairs) == want
    assert set(res.pairs["scope"]) == {"across sources"}
    assert res.leaks == {"split": len(want)} and res.pairs["split_leak"].all()

    written = write_dedup_outputs(res, cells, tmp_path / "dedup")
    assert len(pd.read_csv(written["csv"])) == len(want)
    assert Path(written["png"]).stat().st_size > 10_000

    x = np.load(emb / "embeddings.npy")
    train, test = np.flatnonzero(~copies.to_numpy()), np.flatnonzero(copies.to_numpy())
    leak = folds_leakage(x, cells, [(train, test)], emb)
    assert leak is not None and leak["n_test_with_duplicate"] == len(test) == len(want)
    line = leakage_warning("folder", leak)
    assert line is not None and f"{len(test)} of {len(test)} test cells of folder" in line
    # the original cells only: no leak, no warning
    clean = folds_leakage(x, cells, [(train[::2], train[1::2])], emb)
    assert clean is not None and clean["n_test_with_duplicate"] == 0
    assert leakage_warning("folder", clean) is None


def test_hash_orientations_and_crops(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((80, 80, 3)) * 255).astype(np.uint8)).resize((200, 200))
    h = image_hash(img)
    assert h.turns.shape == (8, 32) and h.windows.shape == (76, 32)
    for t in (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90, Image.Transpose.TRANSPOSE):
        assert hash_distance(h, image_hash(img.transpose(t))) <= 4  # resampling is not exactly equivariant
    assert hash_distance(h, image_hash(img.crop((10, 10, 190, 190)))) <= DEFAULT_THRESHOLD
    other = Image.fromarray((rng.random((80, 80, 3)) * 255).astype(np.uint8)).resize((200, 200))
    assert hash_distance(h, image_hash(other)) > 80


def test_probe_warns_with_the_count(planted, capfd: pytest.CaptureFixture) -> None:
    seed, emb, want = planted
    if not seed:
        pytest.skip("the seed-0 folder was rewritten by the bookkeeping test")
    from ssl_cyto.evaluation.probing import probe

    cells = pd.read_parquet(emb / "cells.parquet")
    copies = cells["path"].str.contains("_(?:" + "|".join(EDITS) + r")\.", regex=True)
    pd.DataFrame(
        {"cell_id": cells["cell_id"], "split": np.where(copies, "test", "train"), "seed": 0}
    ).to_parquet(emb / "split.parquet", index=False)
    res = probe(emb, fast=True, baselines="none", min_cells=1, n_boot=20)
    leak = res["tasks"][cells["source"].iloc[0]]["near_duplicates"]
    assert leak["n_test_with_duplicate"] == leak["n_test"] == len(want)
    err = capfd.readouterr().err
    assert (
        f"warning: {len(want)} of {len(want)} test cells of {cells['source'].iloc[0]} have a near-duplicate"
        in err
    )
