"""Seeded splits: saved, reused, stratified, order-independent, grouped by patient."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ssl_cyto.evaluation import splits as P
from tests.evaluation.emb_folders import blobs, write_emb_dir


def test_split_saved_reused_and_stratified(tmp_path: Path) -> None:
    x, labels = blobs(25, 3)
    d = write_emb_dir(tmp_path / "e", x, labels)
    cells = pd.read_parquet(d / "cells.parquet")
    s1, note1 = P.load_or_make_split(d, cells, "holdout20", seed=0)
    assert "made a new" in note1 and (d / "split.parquet").exists()
    assert (s1["split"] == "test").sum() == 15  # 20% of 25 per class x 3
    # reused: even if the rows come in another order
    s2, note2 = P.load_or_make_split(d, cells.sample(frac=1, random_state=1), "holdout20", seed=0)
    assert "reused" in note2
    pd.testing.assert_frame_equal(s1.reset_index(drop=True), s2.reset_index(drop=True))
    # adding cv5 keeps the holdout column
    f, _ = P.load_or_make_split(d, cells, "cv5", seed=0)
    assert sorted(f["fold"].unique()) == [0, 1, 2, 3, 4]
    saved = pd.read_parquet(d / "split.parquet")
    assert {"cell_id", "split", "fold", "seed"} <= set(saved.columns)
    _, note3 = P.load_or_make_split(d, cells, "holdout20", seed=0)
    assert "reused" in note3
    # another seed or other cells: replaced
    _, note4 = P.load_or_make_split(d, cells, "holdout20", seed=1)
    assert "replaced" in note4
    _, note5 = P.load_or_make_split(d, cells.iloc[:-3], "holdout20", seed=1)
    assert "replaced" in note5
    # order independence of make_split
    a = P.make_split(cells, "cv5", 3).sort_values("cell_id").reset_index(drop=True)
    b = P.make_split(cells.iloc[::-1], "cv5", 3).sort_values("cell_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_split_grouped_by_patient(tmp_path: Path) -> None:
    x, labels = blobs(40, 2)
    d = write_emb_dir(tmp_path / "e", x, labels)
    cells = pd.read_parquet(d / "cells.parquet")
    cells["patient"] = [f"p{i % 10}" for i in range(len(cells))]
    for protocol, col in (("holdout20", "split"), ("cv5", "fold")):
        s = P.make_split(cells, protocol, seed=0).merge(cells[["cell_id", "patient"]], on="cell_id")
        assert (s.groupby("patient")[col].nunique() == 1).all()  # each patient on one side only
        assert s[col].nunique() == (2 if protocol == "holdout20" else 5)
