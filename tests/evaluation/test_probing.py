"""ssl-cyto probe on synthetic embedding folders: numbers against sklearn, controls, report, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_cyto.evaluation import probing as P
from ssl_cyto.evaluation.protocol import C_GRID, FAST_C
from tests.evaluation.emb_folders import blobs, write_emb_dir


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
    clf = LogisticRegression(C=FAST_C, max_iter=300).fit(sc.transform(x[tr]), cells["label"][tr])
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
    assert task["probe_info"][res["main_model"]][0]["C"] in C_GRID


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
    from ssl_cyto.cli import main

    argv = ["probe", str(tmp_path / "missing"), "--fast", "--baselines", "none", "--min-cells", "3"]
    assert main(argv) == 2
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


def test_cli_probe_flags_match_the_library() -> None:
    import argparse

    from ssl_cyto.cli import probe as cli_probe
    from ssl_cyto.evaluation import protocol

    assert cli_probe.PROTOCOLS == protocol.PROTOCOLS and cli_probe.FAST_C == protocol.FAST_C
    parser = argparse.ArgumentParser()
    cli_probe.add_arguments(parser)
    args = parser.parse_args(["E", "--baseline", "dinobloom=emb/x=y", "--baseline", "colour=c"])
    assert dict(args.baseline) == {"dinobloom": "emb/x=y", "colour": "c"}
    assert (args.protocol, args.fast, args.baselines, args.seed, args.min_cells, args.n_boot, args.out) == (
        "holdout20",
        False,
        "auto",
        0,
        None,
        None,
        None,
    )
    for bad in ("noequals", "=dir", "name="):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=EMB_DIR"):
            cli_probe.parse_baseline(bad)


def test_report_module_does_not_import_the_orchestrator() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ssl_cyto.evaluation.probe_report; "
        "assert 'ssl_cyto.evaluation.probing' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
