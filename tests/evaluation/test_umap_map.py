"""ssl-cyto umap: PNGs by class and by source, stratified subsampling, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.evaluation.umap_map import UmapError, stratified_subsample, umap_map


def test_stratified_subsample_keeps_every_stratum() -> None:
    strata = ["a"] * 900 + ["b"] * 95 + ["c"] * 5
    idx = stratified_subsample(strata, 100, seed=0)
    picked = np.array(strata)[idx]
    assert len(idx) <= 100
    assert (picked == "a").sum() == 90 and (picked == "b").sum() == 9 and (picked == "c").sum() == 1
    assert np.array_equal(idx, np.sort(idx))
    assert np.array_equal(idx, stratified_subsample(strata, 100, seed=0))
    assert len(stratified_subsample(strata[:50], 100)) == 50
    many = [f"s{i}" for i in range(30)] * 2
    assert len(stratified_subsample(many, 20)) <= 30  # each stratum still gets one


def _emb(tmp_path: Path, n: int = 60) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = np.eye(3)[y] * 5 + rng.normal(size=(n, 3))
    x = np.hstack([x, rng.normal(size=(n, 5))]).astype(np.float32)
    d = tmp_path / "emb"
    d.mkdir()
    np.save(d / "embeddings.npy", x)
    labels: list[str | None] = [f"C{c}" for c in y]
    labels[0] = None
    pd.DataFrame(
        {
            "cell_id": [f"c{i}" for i in range(n)],
            "source": ["aml-lmu" if i % 2 else "folder:pbc" for i in range(n)],
            "label": labels,
        }
    ).to_parquet(d / "cells.parquet")
    (d / "model.json").write_text(json.dumps({"architecture": "tiny_cnn", "method": "dino", "embed_dim": 8}))
    return d


class _FakeUMAP:
    """Stands in for umap.UMAP in the fast test (the real one JIT-compiles for ~30 s on first use)."""

    def __init__(
        self, n_neighbors: int, n_components: int, metric: str, random_state: int, **_: object
    ) -> None:
        assert (n_components, metric) == (2, "cosine") and n_neighbors <= 15

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return x[:, :2]

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x[:, :2]


def test_umap_report_and_pngs_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))
    _check_umap_outputs(_emb(tmp_path))


@pytest.mark.slow
def test_umap_real_writes_pngs_and_report(tmp_path: Path) -> None:
    _check_umap_outputs(_emb(tmp_path))


def _check_umap_outputs(d: Path) -> None:
    res = umap_map(d, max_points=40, seed=0, command=["ssl-cyto", "umap", str(d), "--max-points", "40"])
    for key in ("by_class", "by_source"):
        p = Path(res[key])
        assert p.exists() and p.stat().st_size > 5000
        assert p.read_bytes()[:4] == b"\x89PNG"
    coords = pd.read_parquet(res["coords"])
    # every cell is drawn: 40 fitted, the other 20 placed on the fitted map
    assert len(coords) == res["n_points"] == res["n_cells"] == 60 and res["n_fit"] <= 40
    assert coords["fitted"].sum() == res["n_fit"]
    assert "60 of 60 cells drawn" in Path(res["report"]).read_text()
    assert "(unlabelled)" in set(coords["label"])
    assert np.isfinite(coords[["x", "y"]].to_numpy()).all()
    text = Path(res["report"]).read_text()
    assert text.splitlines()[1].startswith("ssl-cyto umap ")
    assert "umap_by_class.png" in text and "umap_by_source.png" in text
    assert res["wandb"] is False


def test_umap_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UmapError, match="embed"):
        umap_map(tmp_path)
    with pytest.raises(UmapError, match="max-points"):
        umap_map(_emb(tmp_path), max_points=2)


def test_umap_logs_to_an_active_wandb_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    logged: list[dict] = []
    fake_wandb = types.SimpleNamespace(run=object(), log=logged.append, Image=lambda p: ("image", p))
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb)
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))
    res = umap_map(_emb(tmp_path), max_points=30)
    assert res["wandb"] is True
    assert set(logged[0]) == {"umap/by_class", "umap/by_source"}
    assert logged[0]["umap/by_class"] == ("image", res["by_class"])


def test_cli_umap_flags_and_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import argparse
    import sys
    import types

    from ssl_cyto.cli import umap as cli_umap

    parser = argparse.ArgumentParser()
    cli_umap.add_arguments(parser)
    d = _emb(tmp_path)
    args = parser.parse_args([str(d), "--max-points", "30", "--seed", "1"])
    assert (args.max_points, args.seed, args.out) == (30, 1, None)
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))
    assert cli_umap.run(args) == 0
    assert capsys.readouterr().out.strip() == str(d / "umap" / "report.md")


def test_umap_sample_only_draws_the_fitted_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))
    res = umap_map(_emb(tmp_path), max_points=30, sample_only=True)
    assert res["n_points"] == res["n_fit"] <= 30
    assert len(pd.read_parquet(res["coords"])) == res["n_points"]
