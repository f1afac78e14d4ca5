"""ssl-cyto probe on synthetic embedding folders: numbers against sklearn, controls, split reuse, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.data.catalog import CATALOG_COLUMNS
from ssl_cyto.evaluation import probe as P


def write_emb_dir(
    out: Path,
    feats: np.ndarray,
    labels: list,
    source: str | list[str] = "folder:synth",
    reannot: tuple[list, list] | None = None,
    ids: list[str] | None = None,
    method: str = "simclr",
) -> Path:
    """An EMB_DIR as `ssl-cyto embed` writes it: embeddings.npy + cells.parquet + model.json + embed.json."""
    out.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    sources = [source] * n if isinstance(source, str) else source
    paths = [f"{lab}/cell_{i:04d}.png" for i, lab in enumerate(labels)]
    cells = pd.DataFrame(
        {
            "cell_id": ids or [f"{s}/{p}" for s, p in zip(sources, paths, strict=True)],
            "source": sources,
            "path": paths,
            "root": "/nonexistent",
            "label": labels,
            "reannot1": reannot[0] if reannot else [None] * n,
            "reannot2": reannot[1] if reannot else [None] * n,
            "um_per_px": [None] * n,
            "sha256": [None] * n,
        },
        columns=CATALOG_COLUMNS,
    )
    np.save(out / "embeddings.npy", feats.astype(np.float32))
    cells.to_parquet(out / "cells.parquet", index=False)
    (out / "model.json").write_text(
        json.dumps({"architecture": "tiny_cnn", "method": method, "embed_dim": feats.shape[1]})
    )
    (out / "embed.json").write_text(json.dumps({"data": "synth:folder"}))
    return out


def blobs(n_per_class: int, k: int, dim: int = 16, spread: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 4
    y = np.repeat(np.arange(k), n_per_class)
    x = centres[y] + spread * rng.normal(size=(len(y), dim))
    return x, [f"C{c}" for c in y]


@pytest.fixture
def emb(tmp_path: Path) -> Path:
    x, labels = blobs(40, 4)
    labels[0] = "RARE"  # one cell of a class below the minimum
    d = write_emb_dir(tmp_path / "emb", x, labels)
    rng = np.random.default_rng(5)
    # baselines already embedded (reused by --baselines auto): pure noise and a weak signal
    write_emb_dir(d / "baselines" / "random", rng.normal(size=x.shape), labels, method="random")
    write_emb_dir(
        d / "baselines" / "colour", x[:, :2] + 3 * rng.normal(size=(len(x), 2)), labels, method="colour_hist"
    )
    return d


def test_probe_metrics_match_sklearn_and_report(emb: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
    from sklearn.preprocessing import StandardScaler

    res = P.probe(emb, fast=True, min_cells=5, n_boot=100, command="ssl-cyto probe EMB --fast")
    assert set(res["tasks"]) == {"folder:synth"}
    task = res["tasks"]["folder:synth"]
    assert task["excluded_classes"] == {"RARE": 1}
    assert task["classes"] == ["C0", "C1", "C2", "C3"]
    assert len(res["models"]) == 3  # the model and both reused baselines

    # recompute the linear probe independently with sklearn on the saved split
    cells = pd.read_parquet(emb / "cells.parquet")
    x = np.load(emb / "embeddings.npy")
    split = pd.read_parquet(emb / "split.parquet").set_index("cell_id")["split"]
    s = cells["cell_id"].map(split)
    keep = cells["label"] != "RARE"
    tr, te = (keep & (s == "train")).to_numpy(), (keep & (s == "test")).to_numpy()
    sc = StandardScaler().fit(x[tr])
    clf = LogisticRegression(C=P.FAST_C, max_iter=300).fit(sc.transform(x[tr]), cells["label"][tr])
    pred = clf.predict(sc.transform(x[te]))
    ytrue = cells["label"][te]
    # pooled predictions are in row order of the test cells, as here
    got = task["metrics"][res["main_model"]]["linear"]
    assert got["accuracy"]["estimate"] == pytest.approx(accuracy_score(ytrue, pred))
    assert got["balanced_accuracy"]["estimate"] == pytest.approx(balanced_accuracy_score(ytrue, pred))
    assert got["f1_macro"]["estimate"] == pytest.approx(f1_score(ytrue, pred, average="macro"))
    assert task["n_test"] == int(te.sum())

    # well-separated blobs: the model beats the noise baseline on every metric
    vs = task["vs_baselines"]
    rnd = [k for k in vs if k.startswith("random")][0]
    assert vs[rnd]["linear"]["accuracy"]["low"] > 0
    assert task["retrieval"][res["main_model"]]["precision@1"] > 0.9

    report = Path(res["report"]).read_text().splitlines()
    assert report[1] == "ssl-cyto probe EMB --fast"
    text = "\n".join(report)
    assert "RARE (1)" in text and "Not grouped by patient" in text
    assert "AP@k = (1 / sum_{i<=k} rel_i)" in text
    assert (emb / "probe" / "confusion_folder_synth.png").stat().st_size > 1000
    saved = json.loads((emb / "probe" / "probe.json").read_text())
    assert saved["protocol"] == "holdout20"
    rows = P.headline(saved)
    assert [r["model"] for r in rows] == list(res["models"])
    assert rows[1][f"{res['main_model']} minus this (linear bal. acc.)"].endswith("beats")


def test_shuffled_labels_fall_to_chance(tmp_path: Path) -> None:
    k = 4
    x, labels = blobs(100, k, spread=0.5, seed=1)
    rng = np.random.default_rng(0)
    shuffled = list(rng.permutation(labels))
    d = write_emb_dir(tmp_path / "shuf", x, shuffled)
    res = P.probe(d, fast=True, baselines="none", min_cells=5, n_boot=300)
    m = res["tasks"]["folder:synth"]["metrics"][res["main_model"]]
    for clf in ("linear", "knn20"):
        ci = m[clf]["accuracy"]
        assert ci["low"] <= 1 / k <= ci["high"], (clf, ci)
    # and the unshuffled control is far above chance
    d2 = write_emb_dir(tmp_path / "ok", x, labels)
    res2 = P.probe(d2, fast=True, baselines="none", min_cells=5, n_boot=50)
    assert res2["tasks"]["folder:synth"]["metrics"][res2["main_model"]]["linear"]["accuracy"]["low"] > 0.9


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


def test_cv5_pools_every_cell_and_label_efficiency(tmp_path: Path) -> None:
    x, labels = blobs(20, 3, spread=0.3)
    d = write_emb_dir(tmp_path / "e", x, labels)
    res = P.probe(d, protocol="cv5", fast=False, baselines="none", min_cells=5, n_boot=50, out=tmp_path / "o")
    task = res["tasks"]["folder:synth"]
    assert task["n_test"] == 60 and len(task["n_train_per_fold"]) == 5
    eff = task["label_efficiency"][res["main_model"]]
    assert set(eff) == {"0.01", "0.1", "1.0"}
    assert eff["1.0"]["linear"]["accuracy"]["estimate"] > 0.9
    assert (tmp_path / "o" / "report.md").exists()
    assert task["probe_info"][res["main_model"]][0]["C"] in P.C_GRID


def test_reannotation_scored_beside_raters(tmp_path: Path) -> None:
    x, labels = blobs(30, 3, spread=0.3)
    rng = np.random.default_rng(2)
    r1 = [lab if rng.random() < 0.8 else "C0" for lab in labels]
    r2 = [lab if rng.random() < 0.7 else "C1" for lab in labels]
    d = write_emb_dir(tmp_path / "aml", x, labels, source="aml-lmu", reannot=(r1, r2))
    res = P.probe(d, fast=True, baselines="none", min_cells=5, n_boot=50)
    agree = res["tasks"]["aml-lmu"]["reannotation"]
    n = agree["n_cells"]
    assert n == res["tasks"]["aml-lmu"]["n_test"]
    te = pd.read_parquet(d / "split.parquet").query("split == 'test'")["cell_id"]
    cells = pd.read_parquet(d / "cells.parquet").set_index("cell_id").loc[te]
    expect = (cells["reannot1"] == cells["label"]).mean()
    assert agree["raters"]["gold vs reannot1"]["accuracy"]["estimate"] == pytest.approx(expect)
    assert "vs reannot2" in agree["models"][res["main_model"]]
    assert "re-annotated test cells" in Path(res["report"]).read_text()


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(P.ProbeError, match="embeddings.npy"):
        P.probe(tmp_path, fast=True, baselines="none", min_cells=5)
    x, labels = blobs(10, 2)
    d = write_emb_dir(tmp_path / "e", x, labels)
    np.save(d / "embeddings.npy", x[:-1].astype(np.float32))
    with pytest.raises(P.ProbeError, match="row i of embeddings.npy"):
        P.probe(d, fast=True, baselines="none", min_cells=5)
    d2 = write_emb_dir(tmp_path / "f", x, labels)
    with pytest.raises(P.ProbeError, match="lacks"):
        P.probe(
            d2,
            fast=True,
            baselines="none",
            min_cells=5,
            baseline_dirs={"other": write_emb_dir(tmp_path / "g", x[:5], labels[:5])},
        )


def test_cli_returns_2_on_user_error(tmp_path: Path, capsys) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "missing"), "--fast", "--baselines", "none", "--min-cells", "3"])
    assert P.main(args) == 2
    assert "not an embedding folder" in capsys.readouterr().err


def test_cross_dataset_tasks_and_matek_reference(tmp_path: Path) -> None:
    from ssl_cyto.data.vocabulary import to_shared

    x, labels = blobs(24, 3, spread=0.3, seed=3)
    names = {"C0": "NGS", "C1": "LYT", "C2": "MON"}
    labels = [names[lab] for lab in labels]
    n = len(labels)
    sources = ["aml-lmu" if i % 2 else "bm-mll" for i in range(n)]
    assert to_shared("aml-lmu", "NGS") == to_shared("bm-mll", "NGS") is not None
    d = write_emb_dir(tmp_path / "two", x, labels, source=sources)
    res = P.probe(d, fast=True, baselines="none", min_cells=5, n_boot=50)
    tasks = res["tasks"]
    assert {
        "aml-lmu",
        "bm-mll",
        "aml-lmu -> bm-mll (shared vocabulary)",
        "bm-mll -> aml-lmu (shared vocabulary)",
    } == set(tasks)
    cross = tasks["aml-lmu -> bm-mll (shared vocabulary)"]
    assert cross["n_test"] == tasks["bm-mll"]["n_test"]  # the same held-out bm-mll cells
    assert cross["metrics"][res["main_model"]]["linear"]["accuracy"]["estimate"] > 0.9
    text = Path(res["report"]).read_text()
    assert "Matek 2021 precision (strict)" in text and "0.92 ± 0.02" in text  # NGS, Table 1


def test_auto_baselines_go_through_embed_and_are_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--baselines auto builds the random backbone from model.json and calls embed() with embed.json's spec."""
    import shutil
    import sys
    import types

    x, labels = blobs(15, 2)
    d = write_emb_dir(tmp_path / "e", x, labels)
    meta = {
        "architecture": "tiny_cnn",
        "backbone_kwargs": {"width": 8, "depth": 2},
        "method": "dino",
        "input_size": 32,
    }
    (d / "model.json").write_text(json.dumps(meta))
    (d / "embed.json").write_text(
        json.dumps({"data": "some/shards", "options": {"batch_size": 7, "device": "cuda:3", "seed": 5}})
    )
    calls: list[dict] = []

    def fake_embed(
        model: str, data: str, out_dir: str, *, batch_size: int = 256, device: str = "auto"
    ) -> Path:
        assert device == "auto"
        calls.append({"model": model, "data": data, "out_dir": out_dir, "batch_size": batch_size})
        out = Path(out_dir)
        shutil.copy(d / "cells.parquet", out / "cells.parquet")
        rng = np.random.default_rng(len(calls))
        np.save(out / "embeddings.npy", rng.normal(size=x.shape).astype(np.float32))
        shutil.copy(Path(model) / "model.json", out / "model.json")
        return out

    monkeypatch.setitem(sys.modules, "ssl_cyto.embed", types.SimpleNamespace(embed=fake_embed))
    res = P.probe(d, fast=True, min_cells=5, n_boot=20)
    assert [Path(c["out_dir"]).name for c in calls] == ["random", "colour"]
    assert all(c["data"] == "some/shards" and c["batch_size"] == 7 for c in calls)
    rnd = json.loads((d / "baselines" / "random" / "backbone" / "model.json").read_text())
    assert (rnd["architecture"], rnd["backbone_kwargs"], rnd["method"], rnd["input_size"]) == (
        "tiny_cnn",
        {"width": 8, "depth": 2},
        "random",
        32,
    )
    col = json.loads((d / "baselines" / "colour" / "backbone" / "model.json").read_text())
    assert col["architecture"] == "colour_hist" and col["std"] == [1.0, 1.0, 1.0]
    assert len(res["models"]) == 3
    P.probe(d, fast=True, min_cells=5, n_boot=20)
    assert len(calls) == 2  # reused, not embedded again


def test_end_to_end_with_real_embed(tmp_path: Path, synth_folder: Path) -> None:
    """Generated folder -> embed (a tiny_cnn backbone) -> probe: both baselines embedded by the real embed()."""
    torch = pytest.importorskip("torch")
    from ssl_cyto.embed import embed
    from ssl_cyto.models.backbones import build_backbone, save_backbone

    torch.manual_seed(123)  # "trained" weights: anything but the baseline's seeded init (seed 0)
    module, dim = build_backbone("tiny_cnn", width=8, depth=2)
    bb = save_backbone(
        module,
        tmp_path / "backbone",
        {
            "architecture": "tiny_cnn",
            "backbone_kwargs": {"width": 8, "depth": 2},
            "input_size": 32,
            "method": "simclr",
        },
    )
    emb = embed(str(bb), str(synth_folder), tmp_path / "emb", batch_size=16, progress=False)
    res = P.probe(emb, fast=True, min_cells=3, n_boot=50)
    assert len(res["models"]) == 3
    for kind in ("random", "colour"):
        assert (emb / "baselines" / kind / "embeddings.npy").exists()
    assert (
        json.loads((emb / "baselines" / "colour" / "model.json").read_text())["architecture"] == "colour_hist"
    )
    rnd = json.loads((emb / "baselines" / "random" / "model.json").read_text())
    assert rnd["architecture"] == "tiny_cnn" and rnd["input_size"] == 32
    assert rnd["weights_sha256"] != json.loads((emb / "model.json").read_text())["weights_sha256"]
    (task,) = res["tasks"].values()
    assert set(task["vs_baselines"]) == {"random weights (tiny_cnn)", "colour histogram"}
    assert task["n_test"] > 0


def test_split_grouped_by_patient(tmp_path: Path) -> None:
    x, labels = blobs(40, 2)
    d = write_emb_dir(tmp_path / "e", x, labels)
    cells = pd.read_parquet(d / "cells.parquet")
    cells["patient"] = [f"p{i % 10}" for i in range(len(cells))]
    for protocol, col in (("holdout20", "split"), ("cv5", "fold")):
        s = P.make_split(cells, protocol, seed=0).merge(cells[["cell_id", "patient"]], on="cell_id")
        assert (s.groupby("patient")[col].nunique() == 1).all()  # each patient on one side only
        assert s[col].nunique() == (2 if protocol == "holdout20" else 5)
