"""``probe --protocol dinobloom``: DinoBloom's fixed BM-MLL split, its classifiers, its 5-fold elsewhere.

The features are built so that each setting matters: z-scoring them, cosine instead of Euclidean
kNN, or another C would change at least one prediction (asserted), so a probe that got any of
DinoBloom's settings wrong would not reproduce the predictions computed here with scikit-learn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from ssl_cyto.data.scanning import catalog_from_path
from ssl_cyto.data.synth import synthesize
from ssl_cyto.evaluation import dinobloom as D
from ssl_cyto.evaluation.dinobloom_probe import is_generated, published_rows_apply
from ssl_cyto.evaluation.probing import probe
from ssl_cyto.formats.embeddings import write_embedding_folder
from tests.evaluation.emb_folders import write_emb_dir

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["BLA", "EOS", "LYT", "NGS"]


def _features(labels: np.ndarray, seed: int = 3) -> np.ndarray:
    """Weak class signal, very unequal feature scales and offsets: scaling, metric and C all matter."""
    rng = np.random.default_rng(seed)
    k = int(labels.max()) + 1
    centres = rng.normal(size=(k, 6)) * 1.2
    x = centres[labels] + rng.normal(size=(len(labels), 6))
    return (x * np.array([40.0, 0.05, 3.0, 0.5, 1.0, 8.0]) + np.array([500.0, 0, 0, 20, 0, -30])).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def bm_emb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated BM-MLL cells (real file names) with hand-built features, as an embedding folder."""
    base = tmp_path_factory.mktemp("dinobloom")
    root = synthesize(base / "bm", layout="bm-mll", per_class=30, seed=0, size=48, classes=CLASSES)
    cells = catalog_from_path(root).sort_values("cell_id").reset_index(drop=True)
    y = cells["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    meta = {"architecture": "tiny_cnn", "method": "simclr", "embed_dim": 6}
    return write_embedding_folder(base / "emb", _features(y), cells, meta, {"data": str(root)})


def _expected(x_tr, y_tr, x_te) -> dict[str, np.ndarray]:
    c = x_tr.shape[1] * len(np.unique(y_tr)) / 100
    return {
        "logreg": LogisticRegression(C=c, solver="lbfgs", max_iter=1000).fit(x_tr, y_tr).predict(x_te),
        "knn1": KNeighborsClassifier(1).fit(x_tr, y_tr).predict(x_te),
        "knn20": KNeighborsClassifier(20).fit(x_tr, y_tr).predict(x_te),
    }


def _alternatives(x_tr, y_tr, x_te) -> dict[str, np.ndarray]:
    """What a probe with other settings would predict."""
    sc = StandardScaler().fit(x_tr)
    c = x_tr.shape[1] * len(np.unique(y_tr)) / 100
    out = {
        "logreg z-scored": LogisticRegression(C=c, max_iter=1000)
        .fit(sc.transform(x_tr), y_tr)
        .predict(sc.transform(x_te)),
        "logreg C=0.01": LogisticRegression(C=0.01, max_iter=1000).fit(x_tr, y_tr).predict(x_te),
        "logreg C=10": LogisticRegression(C=10.0, max_iter=1000).fit(x_tr, y_tr).predict(x_te),
    }
    for k in (1, 20):
        out[f"knn{k} cosine"] = KNeighborsClassifier(k, metric="cosine").fit(x_tr, y_tr).predict(x_te)
        out[f"knn{k} z-scored"] = (
            KNeighborsClassifier(k).fit(sc.transform(x_tr), y_tr).predict(sc.transform(x_te))
        )
    return out


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fixed_split_missing_cells_and_classifier_settings(
    bm_emb: Path, capfd: pytest.CaptureFixture
) -> None:
    cells = pd.read_parquet(bm_emb / "cells.parquet")
    x = np.load(bm_emb / "embeddings.npy")
    listed = D.published_test_files()
    assert len(listed) == 34266
    names = cells["path"].str.rsplit("/", n=1).str[-1]
    in_test = names.isin(listed).to_numpy()
    # the generator writes real BM-MLL names: some generated cells are in the published test split
    assert 5 <= in_test.sum() < len(cells) - 20, in_test.sum()

    res = probe(bm_emb, protocol="dinobloom", baselines="none", n_boot=50, command="ssl-cyto probe EMB")
    task = res["tasks"]["bm-mll"]
    split = task["split"]
    assert split["n_found"] == int(in_test.sum())
    assert split["n_missing"] == 34266 - int(in_test.sum())
    assert sum(split["missing_by_class"].values()) == split["n_missing"]
    assert (
        split["missing_by_class"]["MON"] == 808
    )  # a class absent from the data: all its listed cells missing
    assert split["n_train"] == int((~in_test).sum())
    assert task["published_rows"] is None  # 30 of 34,266 cells: not "most of the published test cells"
    err = capfd.readouterr().err
    assert f"{split['n_missing']} of DinoBloom's 34266 listed test cells are not in the data" in err
    report = Path(res["report"]).read_text()
    assert f"{split['n_missing']} listed cells are not in the data" in report
    assert "published rows are not shown" in report
    saved = pd.read_csv(Path(res["report"]).parent / "split_dinobloom.csv")
    assert set(saved.loc[saved["dinobloom"] == "test", "cell_id"]) == set(cells["cell_id"][in_test])

    y = cells["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    x_tr, y_tr, x_te, y_te = x[~in_test], y[~in_test], x[in_test], y[in_test]
    want = _expected(x_tr, y_tr, x_te)
    alternatives = _alternatives(x_tr, y_tr, x_te)
    for name, pred in alternatives.items():  # each setting changes at least one prediction
        base = want["logreg"] if name.startswith("logreg") else want[name.split()[0]]
        assert (pred != base).any(), f"{name} gives the same predictions: the test would not catch it"
    info = task["fit_info"][res["main_model"]][0]
    assert info["C"] == pytest.approx(6 * 4 / 100)
    got = task["metrics"][res["main_model"]]
    for clf, pred in want.items():
        m = got[clf]
        assert m["accuracy"]["estimate"] == pytest.approx(accuracy_score(y_te, pred))
        assert m["balanced_accuracy"]["estimate"] == pytest.approx(balanced_accuracy_score(y_te, pred))
        assert m["f1_weighted"]["estimate"] == pytest.approx(f1_score(y_te, pred, average="weighted"))
        assert m["f1_macro"]["estimate"] == pytest.approx(f1_score(y_te, pred, average="macro"))
        assert m["accuracy"]["low"] <= m["accuracy"]["estimate"] <= m["accuracy"]["high"]


def test_five_fold_elsewhere_as_their_code_runs_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = [f"C{i % 3}" for i in range(45)] + ["RARE", "RARE"]  # no minimum: a 2-cell class is scored
    y_all = np.array([int(lab[1]) if lab != "RARE" else 3 for lab in labels])
    x = _features(y_all, seed=1) + rng.normal(size=(len(labels), 6)).astype(np.float32)
    emb = write_emb_dir(tmp_path / "emb", x, labels)
    res = probe(emb, protocol="dinobloom", baselines="none", n_boot=20)
    task = res["tasks"]["folder:synth"]
    assert task["kind"] == "5-fold" and "RARE" in task["classes"]
    cells = pd.read_parquet(emb / "cells.parquet")
    codes = cells["label"].map({c: i for i, c in enumerate(sorted(set(labels)))}).to_numpy()
    xs = np.load(emb / "embeddings.npy")
    accs, f1s = [], []
    with pytest.warns(UserWarning):  # the 2-cell class: fewer members than folds, as in their runs
        folds = list(StratifiedKFold(5).split(xs, codes))
    for tr, te in folds:
        pred = _expected(xs[tr], codes[tr], xs[te])["knn20"]
        accs.append(accuracy_score(codes[te], pred))
        f1s.append(f1_score(codes[te], pred, average="macro"))
    got = task["metrics"][res["main_model"]]["knn20"]
    assert got["accuracy"]["estimate"] == pytest.approx(np.mean(accs))
    assert got["f1_macro"]["estimate"] == pytest.approx(np.mean(f1s))
    report = Path(res["report"]).read_text()
    assert "StratifiedKFold(n_splits=5)` without shuffling" in report


def test_published_rows_only_for_most_of_the_split_on_real_data(bm_emb: Path) -> None:
    info = {"n_listed": 34266, "n_found": 30000}
    assert published_rows_apply(info, generated=False)
    assert not published_rows_apply(info, generated=True)
    assert not published_rows_apply({"n_listed": 34266, "n_found": 17000}, generated=False)
    cells = pd.read_parquet(bm_emb / "cells.parquet")
    assert is_generated(cells, {"data": "synth:bm-mll"})
    root = Path(cells["root"].iloc[0])
    marker = root / "SYNTHETIC"
    if not marker.exists():  # until the generator writes its own marker (requested), plant one
        marker.write_text("ssl_cyto.data.synth\n")
    assert is_generated(cells, {"data": str(root)})
    assert D.dinobloom_c(384, 21) == pytest.approx(80.64)


def test_cli_dinobloom_protocol(bm_emb: Path, tmp_path: Path) -> None:
    out = tmp_path / "probe_out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ssl_cyto",
            "probe",
            str(bm_emb),
            "--protocol",
            "dinobloom",
            "--baselines",
            "none",
            "--n-boot",
            "20",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "report.md")
    assert json.loads((out / "probe.json").read_text())["protocol"] == "dinobloom"
    assert "probe: [" in proc.stderr  # a progress line per stage with the elapsed time
