"""``ssl-cyto probe``: frozen-feature evaluation against expert labels, beside two baselines.

Given an embedding folder (``embeddings.npy`` + ``cells.parquet`` + ``model.json`` + ``embed.json``,
written by :func:`ssl_cyto.embed.embed`), :func:`probe` measures how well the frozen features
separate the experts' classes:

* **Splits** (seeded, saved to ``EMB_DIR/split.parquet`` and reused while the labelled cells are the
  same, so baselines and later runs share them): ``holdout20`` = stratified 80/20 (DinoBloom,
  Koch et al. 2024); ``cv5`` = stratified 5-fold cross-validation with out-of-fold predictions pooled
  (Matek et al., Blood 2021). Strata are (source, label). When ``cells.parquet`` has a ``patient``
  column the split is grouped by patient (scikit-learn ``StratifiedGroupKFold``); otherwise cells of
  one patient may fall on both sides, and the report says so.
* **Labels**: only labelled cells; per source, classes with fewer than ``MIN_CELLS_TO_SCORE`` cells are
  left out (and listed). With several sources, cross-dataset tasks train on one source and test on
  another through the shared vocabulary (:func:`ssl_cyto.data.vocabulary.to_shared`).
* **Classifiers** on the same split: a linear probe (StandardScaler fit on the training cells only +
  L-BFGS multinomial logistic regression, C chosen on a stratified validation part of the training
  cells), and weighted cosine kNN with k = 1 and k = 20 (Wu et al. 2018; DINO, Caron et al. 2021).
  kNN and retrieval also run on the features z-scored with the training cells' statistics: the colour
  histogram is defined z-scored, and on raw histograms cosine similarity is dominated by the white
  background bins (PBC subset, kNN-20: 0.61 raw vs 0.88 z-scored), which would make the floor too easy
  to beat. Every model gets the same treatment.
* **Metrics**: accuracy, balanced accuracy, macro and weighted F1 with percentile-bootstrap 95%
  intervals over resampled test cells (:mod:`ssl_cyto.evaluation.metrics`); per-class precision,
  recall and F1 (beside Matek 2021 Table 1 for BM-MLL); a confusion matrix PNG; retrieval with the
  training cells as database and the test cells as queries (precision@1, mAP@5, mAP@10 from
  :func:`ssl_cyto.retrieval.metrics.retrieval_metrics`); label efficiency (1%, 10%, 100% of the
  training labels); for re-annotated cells (AML-LMU), accuracy and Cohen's kappa against the gold
  label and each re-annotation, beside the raters' own agreement on the same cells.
* **Baselines** on the same split: the same architecture with seeded random weights and the colour
  histogram (:class:`ssl_cyto.evaluation.baselines.ColourHistogram`). "Beats" means the paired-bootstrap
  95% interval of the difference (same resampled test cells for both) lies above 0.

Everything lands in ``--out`` (default ``EMB_DIR/probe/``): ``report.md``, PNGs and ``probe.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

from ssl_cyto.evaluation.probe_report import (  # noqa: E402 - formatting lives in its own module
    _confusion_png,
    _intro_section,
    _matek_reference,
    _task_sections,
    headline,
)

__all__ = [
    "ProbeError",
    "headline",
    "add_arguments",
    "load_embeddings",
    "load_or_make_split",
    "main",
    "make_split",
    "probe",
]

PROTOCOLS = ("holdout20", "cv5")
C_GRID = (0.0001, 0.001, 0.01, 0.1, 1.0)
FAST_C = 0.1
SWEEP_MAX_TRAIN = 20000  # training cells used per C of the sweep (the final fit uses all)
LABEL_FRACTIONS = (0.01, 0.1, 1.0)
KNN_KS = (1, 20)
RETRIEVAL_K = 10
TEMPERATURE = 0.07
CLASSIFIERS = ("linear", "knn1", "knn20")
SPLIT_FILE = "split.parquet"
UNASSIGNABLE = "UNC"  # as ssl_cyto.data.vocabulary.UNASSIGNABLE


class ProbeError(ValueError):
    """Bad input to the probe (missing files, mismatched embeddings, nothing to score)."""


# ----------------------------------------------------------------------------------------------
# loading


def load_embeddings(emb_dir: str | Path) -> tuple[np.ndarray, pd.DataFrame, dict, dict]:
    """Read an embedding folder: ``(features N x D float32, cells, model_meta, embed_meta)``.

    Raises:
        ProbeError: a missing file, or a row count that differs between the two files.
    """
    import numpy as np
    import pandas as pd

    emb_dir = Path(emb_dir)
    emb_file, cells_file = emb_dir / "embeddings.npy", emb_dir / "cells.parquet"
    for f in (emb_file, cells_file):
        if not f.exists():
            raise ProbeError(
                f"{f} not found: {emb_dir} is not an embedding folder (run `ssl-cyto embed` first)"
            )
    feats = np.load(emb_file, mmap_mode="r")
    cells = pd.read_parquet(cells_file)
    if feats.ndim != 2 or feats.shape[0] != len(cells):
        raise ProbeError(
            f"{emb_file} has shape {feats.shape} but {cells_file} has {len(cells)} rows; "
            "row i of embeddings.npy must be row i of cells.parquet (re-run `ssl-cyto embed`)"
        )
    if "cell_id" not in cells.columns:
        raise ProbeError(f"{cells_file} has no 'cell_id' column (columns: {list(cells.columns)})")
    if cells["cell_id"].duplicated().any():
        dup = cells.loc[cells["cell_id"].duplicated(), "cell_id"].iloc[0]
        raise ProbeError(f"{cells_file}: cell_id {dup!r} appears more than once")
    for col in ("source", "label", "reannot1", "reannot2"):
        if col not in cells.columns:
            cells[col] = None
    model_meta = _read_json(emb_dir / "model.json")
    embed_meta = _read_json(emb_dir / "embed.json")
    return np.asarray(feats, dtype=np.float32), cells.reset_index(drop=True), model_meta, embed_meta


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ProbeError(f"{path} is not valid JSON ({exc})") from exc


def _has_value(series: pd.Series) -> pd.Series:
    return series.notna() & (series.astype(str).str.strip() != "")


def _labelled(cells: pd.DataFrame) -> pd.Series:
    """Cells with an expert label (``UNC``, AML-LMU's "unassignable", is not a label)."""
    return _has_value(cells["label"]) & (cells["label"].astype(str) != UNASSIGNABLE)


# ----------------------------------------------------------------------------------------------
# splits


def make_split(cells: pd.DataFrame, protocol: str, seed: int = 0) -> pd.DataFrame:
    """A seeded stratified split of the labelled cells: columns ``cell_id`` and ``split`` or ``fold``.

    Strata are (source, label). ``holdout20``: per stratum, ``round(0.2 n)`` cells (at least 1 when
    n >= 2, never all) go to ``test``, the rest to ``train``. ``cv5``: per stratum the shuffled cells are
    dealt to folds 0..4 from a random starting fold, so fold sizes differ by at most one per stratum.
    With a ``patient`` column, scikit-learn's ``StratifiedGroupKFold`` keeps each patient in one fold
    (``holdout20`` uses its fold 0 as test). The result does not depend on the row order of ``cells``.
    """
    import numpy as np
    import pandas as pd

    if protocol not in PROTOCOLS:
        raise ProbeError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    lab = cells.loc[_labelled(cells)].sort_values("cell_id", kind="stable")
    if lab.empty:
        raise ProbeError("no labelled cells: the probe needs cells with a 'label' (expert class)")
    ids = lab["cell_id"].to_numpy()
    strata = (lab["source"].astype(str) + "\x1f" + lab["label"].astype(str)).to_numpy()
    fold = np.full(len(lab), -1, dtype=np.int64)
    if "patient" in lab.columns and _has_value(lab["patient"]).all():
        from sklearn.model_selection import StratifiedGroupKFold

        groups = (lab["source"].astype(str) + "\x1f" + lab["patient"].astype(str)).to_numpy()
        sgkf = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # rare classes: fewer members than folds
            for k, (_, test_idx) in enumerate(sgkf.split(np.zeros(len(lab)), strata, groups)):
                fold[test_idx] = k
    else:
        rng = np.random.default_rng(seed)
        for stratum in sorted(set(strata)):
            members = np.flatnonzero(strata == stratum)
            perm = members[rng.permutation(len(members))]
            if protocol == "cv5":
                fold[perm] = (np.arange(len(perm)) + int(rng.integers(5))) % 5
            else:
                n = len(perm)
                n_test = int(round(0.2 * n))
                if n >= 2:
                    n_test = min(max(n_test, 1), n - 1)
                fold[perm[:n_test]] = 0
                fold[perm[n_test:]] = 1
    if protocol == "holdout20":
        return pd.DataFrame({"cell_id": ids, "split": np.where(fold == 0, "test", "train")})
    return pd.DataFrame({"cell_id": ids, "fold": fold})


def load_or_make_split(
    emb_dir: str | Path, cells: pd.DataFrame, protocol: str, seed: int = 0, save: bool = True
) -> tuple[pd.DataFrame, str]:
    """Reuse ``EMB_DIR/split.parquet`` when it covers exactly the same labelled cells with the same seed.

    The file holds ``cell_id``, ``seed``, and ``split`` (holdout20) and/or ``fold`` (cv5); a protocol
    not yet in it is added. Returns ``(split frame for this protocol, note for the report)``.
    """
    import pandas as pd

    path = Path(emb_dir) / SPLIT_FILE
    col = "split" if protocol == "holdout20" else "fold"
    wanted = set(cells.loc[_labelled(cells), "cell_id"])
    saved = None
    note = ""
    if path.exists():
        saved = pd.read_parquet(path)
        same_cells = "cell_id" in saved.columns and set(saved["cell_id"]) == wanted
        same_seed = "seed" in saved.columns and len(saved) > 0 and int(saved["seed"].iloc[0]) == seed
        if not (same_cells and same_seed):
            why = "other labelled cells" if not same_cells else f"seed {int(saved['seed'].iloc[0])}"
            note = f"the saved split {path} was for {why} and was replaced; "
            saved = None
        elif col in saved.columns and saved[col].notna().all():
            out = saved[["cell_id", col]].copy()
            if col == "fold":
                out["fold"] = out["fold"].astype("int64")
            return out, f"reused the saved split {path} ({len(out)} labelled cells, seed {seed})"
    fresh = make_split(cells, protocol, seed)
    if save:
        merged = (
            fresh.copy()
            if saved is None
            else saved.drop(columns=[col], errors="ignore").merge(fresh, on="cell_id")
        )
        merged["seed"] = seed
        merged.to_parquet(path, index=False)
        note += f"made a new {protocol} split (seed {seed}) and saved it to {path}"
    else:
        note += f"made a new {protocol} split (seed {seed}), not saved"
    return fresh, note


# ----------------------------------------------------------------------------------------------
# tasks


@dataclass
class Task:
    """One evaluation: which cells train and test in each fold, and their class codes."""

    name: str
    kind: str  # "source" or "cross"
    source_train: str
    source_test: str
    classes: list[str]
    labels: np.ndarray  # class code per cell of the whole table (-1: not in this task)
    folds: list[tuple[np.ndarray, np.ndarray]]  # (train row indices, test row indices)
    excluded: dict[str, int] = field(default_factory=dict)  # class -> cells, below MIN_CELLS_TO_SCORE

    @property
    def test_rows(self) -> np.ndarray:
        import numpy as np

        return np.concatenate([te for _, te in self.folds])


def _fold_of(cells: pd.DataFrame, split: pd.DataFrame, protocol: str) -> tuple[np.ndarray, list[int]]:
    """Per row of ``cells``: the fold code (-2: not in the split); and the test folds to iterate."""
    import numpy as np

    m = cells[["cell_id"]].merge(split, on="cell_id", how="left")
    if protocol == "holdout20":
        fold = np.where(m["split"].to_numpy() == "test", 0, np.where(m["split"].to_numpy() == "train", 1, -2))
        return fold.astype(np.int64), [0]
    f = m["fold"].to_numpy(dtype=float)
    return np.where(np.isnan(f), -2, f).astype(np.int64), [0, 1, 2, 3, 4]


def _min_cells_default() -> int:
    from ssl_cyto.data.vocabulary import MIN_CELLS_TO_SCORE

    return int(MIN_CELLS_TO_SCORE)


def build_tasks(
    cells: pd.DataFrame, split: pd.DataFrame, protocol: str, min_cells: int, cross: bool = True
) -> tuple[list[Task], list[str]]:
    """Per-source tasks and, with several labelled sources, cross-dataset tasks. Returns (tasks, notes)."""
    import numpy as np

    notes: list[str] = []
    fold, test_folds = _fold_of(cells, split, protocol)
    labelled = _labelled(cells).to_numpy()
    source = cells["source"].astype(str).to_numpy()
    label = cells["label"].astype(str).to_numpy()
    tasks: list[Task] = []

    def folds_for(train_mask, test_mask) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for k in test_folds:
            tr = np.flatnonzero(train_mask & (fold >= 0) & (fold != k))
            te = np.flatnonzero(test_mask & (fold == k))
            if len(tr) and len(te):
                out.append((tr, te))
        return out

    sources = sorted(set(source[labelled]))
    for src in sources:
        in_src = labelled & (source == src)
        names, counts = np.unique(label[in_src], return_counts=True)
        keep = [str(n) for n, c in zip(names, counts, strict=True) if c >= min_cells]
        excluded = {str(n): int(c) for n, c in zip(names, counts, strict=True) if c < min_cells}
        if len(keep) < 2:
            notes.append(
                f"source {src}: fewer than 2 classes with >= {min_cells} labelled cells "
                f"({dict(zip(names.tolist(), counts.tolist(), strict=True))}); not scored"
            )
            continue
        code = {c: i for i, c in enumerate(keep)}
        codes = np.array([code.get(lab, -1) if ok else -1 for lab, ok in zip(label, in_src, strict=True)])
        mask = codes >= 0
        fl = folds_for(mask, mask)
        if not fl:
            notes.append(f"source {src}: the split leaves no training or no test cells; not scored")
            continue
        tasks.append(Task(src, "source", src, src, keep, codes, fl, excluded))

    if cross and len(sources) >= 2:
        from ssl_cyto.data.vocabulary import to_shared

        shared = np.array(
            [to_shared(s, lab) if ok else None for s, lab, ok in zip(source, label, labelled, strict=True)],
            dtype=object,
        )
        for a in sources:
            for b in sources:
                if a == b:
                    continue
                ca = _counts(shared[labelled & (source == a)])
                cb = _counts(shared[labelled & (source == b)])
                keep = sorted(c for c in set(ca) & set(cb) if ca[c] >= min_cells and cb[c] >= min_cells)
                if len(keep) < 2:
                    notes.append(
                        f"cross {a} -> {b}: fewer than 2 shared classes with >= {min_cells} cells each"
                    )
                    continue
                code = {c: i for i, c in enumerate(keep)}
                codes = np.array([code.get(s, -1) if s is not None else -1 for s in shared])
                fl = folds_for((codes >= 0) & (source == a), (codes >= 0) & (source == b))
                if fl:
                    tasks.append(Task(f"{a} -> {b} (shared vocabulary)", "cross", a, b, keep, codes, fl))
    return tasks, notes


def _counts(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        if v is not None:
            out[v] = out.get(v, 0) + 1
    return out


# ----------------------------------------------------------------------------------------------
# classifiers


def _stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    import numpy as np

    rng = np.random.default_rng(seed)
    val = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        if len(members) < 2:
            return None
        n_val = min(max(1, int(round(fraction * len(members)))), len(members) - 1)
        val.append(rng.choice(members, n_val, replace=False))
    v = np.sort(np.concatenate(val))
    t = np.setdiff1d(np.arange(len(y)), v)
    return t, v


def _fit_logreg(x: np.ndarray, y: np.ndarray, c: float, max_iter: int, n_classes: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter)
        clf.fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clf, converged


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score both with the mean and standard deviation of ``x_train`` (scikit-learn StandardScaler)."""
    import numpy as np
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    return (
        scaler.transform(x_train).astype(np.float32, copy=False),
        scaler.transform(x_test).astype(np.float32, copy=False),
    )


def linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    fast: bool = False,
    seed: int = 0,
    cs: Sequence[float] = C_GRID,
    standardise: bool = True,
) -> tuple[np.ndarray, dict]:
    """StandardScaler (fit on the training cells) + L-BFGS multinomial logistic regression.

    C is chosen on a stratified 20% validation part of the training cells (balanced accuracy; each C
    fit on at most ``SWEEP_MAX_TRAIN`` of the other cells, stratified), then the model is refit on all
    training cells. ``fast``: C = 0.1, no sweep. ``standardise=False``: the features are already
    standardised by the caller. Returns (test predictions, info).
    """
    import numpy as np

    from ssl_cyto.evaluation.metrics import balanced_accuracy

    if standardise:
        xtr, xte = _standardise(x_train, x_test)
    else:
        xtr, xte = x_train, x_test
    max_iter = 300 if fast else 1000
    info: dict[str, Any] = {"sweep": {}}
    if len(np.unique(y_train)) < 2:
        only = int(y_train[0])
        return np.full(len(x_test), only, dtype=np.int64), {"C": None, "note": "one class in training"}
    best_c = FAST_C
    parts = None if fast else _stratified_holdout(y_train, 0.2, seed)
    if parts is not None and len(cs) > 1:
        tr, va = parts
        if len(tr) > SWEEP_MAX_TRAIN:  # the sweep only ranks C: a stratified subset of the fit part suffices
            from ssl_cyto.evaluation.metrics import label_subsample

            tr = tr[label_subsample(y_train[tr], SWEEP_MAX_TRAIN / len(tr), seed=seed)]
        info["sweep_train_cells"] = int(len(tr))
        best = -1.0
        for c in cs:
            clf, _ = _fit_logreg(xtr[tr], y_train[tr], c, max_iter, n_classes)
            score = balanced_accuracy(y_train[va], clf.predict(xtr[va]))
            info["sweep"][str(c)] = score
            if score > best + 1e-12:
                best, best_c = score, c
    elif not fast:
        info["note"] = f"a class has < 2 training cells: no validation part, C = {FAST_C}"
    clf, converged = _fit_logreg(xtr, y_train, best_c, max_iter, n_classes)
    info.update({"C": best_c, "converged": converged, "max_iter": max_iter})
    pred = clf.classes_[clf.predict_proba(xte).argmax(1)].astype(np.int64)
    return pred, info


@dataclass
class FoldPredictions:
    """Pooled out-of-fold predictions of one model on one task."""

    y_true: np.ndarray
    preds: dict[str, np.ndarray]  # classifier -> codes
    neighbours: np.ndarray  # (n_test, RETRIEVAL_K) class codes of retrieved training cells (-1: none)
    info: list[dict]
    efficiency: dict[str, dict[str, np.ndarray]]  # fraction -> classifier -> codes


def run_classifiers(
    x: np.ndarray, task: Task, fast: bool, seed: int, fractions: Sequence[float] = LABEL_FRACTIONS
) -> FoldPredictions:
    """Linear probe, kNN-1, kNN-20 and retrieval neighbours for every fold of ``task`` on features ``x``."""
    import numpy as np

    from ssl_cyto.evaluation.metrics import cosine_neighbours, knn_vote, label_subsample

    k_classes = len(task.classes)
    ys, infos = [], []
    preds: dict[str, list] = {c: [] for c in CLASSIFIERS}
    neigh = []
    eff: dict[str, dict[str, list]] = {str(f): {"linear": [], "knn20": []} for f in fractions if f < 1}
    for fi, (tr, te) in enumerate(task.folds):
        ytr, yte = task.labels[tr], task.labels[te]
        # every classifier sees features z-scored with this fold's training cells (no labels needed, so
        # the label-efficiency runs below use the same statistics)
        xtr, xte = _standardise(x[tr], x[te])
        lin, info = linear_probe(xtr, ytr, xte, k_classes, fast=fast, seed=seed + fi, standardise=False)
        info["fold"] = fi
        info["n_train"], info["n_test"] = len(tr), len(te)
        infos.append(info)
        kmax = max(max(KNN_KS), RETRIEVAL_K)
        sims, idx = cosine_neighbours(xtr, xte, kmax)
        nlab = ytr[idx]
        preds["linear"].append(lin)
        preds["knn1"].append(nlab[:, 0].astype(np.int64))
        preds["knn20"].append(knn_vote(sims, nlab, 20, k_classes, TEMPERATURE))
        pad = np.full((len(te), RETRIEVAL_K), -1, dtype=np.int64)
        pad[:, : min(RETRIEVAL_K, nlab.shape[1])] = nlab[:, :RETRIEVAL_K]
        neigh.append(pad)
        ys.append(yte)
        for frac_key, store in eff.items():
            sub = label_subsample(ytr, float(frac_key), seed=seed + fi)
            p, _ = linear_probe(
                xtr[sub], ytr[sub], xte, k_classes, fast=fast, seed=seed + fi, standardise=False
            )
            store["linear"].append(p)
            s2, i2 = cosine_neighbours(xtr[sub], xte, 20)
            store["knn20"].append(knn_vote(s2, ytr[sub][i2], 20, k_classes, TEMPERATURE))
    cat = np.concatenate
    return FoldPredictions(
        y_true=cat(ys),
        preds={c: cat(v) for c, v in preds.items()},
        neighbours=cat(neigh),
        info=infos,
        efficiency={f: {c: cat(v) for c, v in d.items()} for f, d in eff.items()},
    )


# ----------------------------------------------------------------------------------------------
# baselines


EMBED_OPTIONS_REUSED = ("batch_size", "num_workers", "limit", "chunk_batches")


def _embed_kwargs(embed_meta: dict) -> dict:
    """Options of the original ``embed`` run to repeat for a baseline (same cells: ``limit`` matters).

    ``embed.json`` keeps them under ``options``; the device is left to ``auto`` (the probe may run
    elsewhere), the seed does not apply (baselines are given as backbone folders).
    """
    import inspect

    from ssl_cyto.embed import embed

    params = inspect.signature(embed).parameters
    given = {**{k: v for k, v in embed_meta.items() if k != "options"}, **(embed_meta.get("options") or {})}
    return {k: given[k] for k in EMBED_OPTIONS_REUSED if k in given and k in params}


def compute_baseline(kind: str, emb_dir: Path, model_meta: dict, embed_meta: dict, seed: int) -> Path:
    """Embed the same data with a baseline through :func:`ssl_cyto.embed.embed`; reuse when present.

    ``random``: the architecture (and ``backbone_kwargs``, input size, normalisation) of
    ``EMB_DIR/model.json`` with seeded random weights; ``colour``: the ``colour_hist`` backbone.
    Written to ``EMB_DIR/baselines/<kind>/`` (the backbone itself to ``.../backbone/``).
    """
    out = emb_dir / "baselines" / kind
    if (out / "embeddings.npy").exists() and (out / "cells.parquet").exists():
        return out
    data = embed_meta.get("data")
    if not data:
        raise ProbeError(
            f"{emb_dir / 'embed.json'} has no 'data' entry, so the {kind} baseline cannot be embedded; "
            f"embed it yourself and pass --baseline {kind}=DIR, or use --baselines none"
        )
    import torch

    from ssl_cyto.embed import embed
    from ssl_cyto.models.backbones import build_backbone, save_backbone

    arch = model_meta.get("architecture")
    if kind == "random":
        if not arch:
            raise ProbeError(
                f"{emb_dir / 'model.json'} has no 'architecture'; cannot build the random baseline"
            )
        torch.manual_seed(seed)
        module, dim = build_backbone(arch, **dict(model_meta.get("backbone_kwargs") or {}))
        meta = {
            "architecture": arch,
            "backbone_kwargs": dict(model_meta.get("backbone_kwargs") or {}),
            "embed_dim": dim,
            "input_size": model_meta.get("input_size"),
            "mean": model_meta.get("mean"),
            "std": model_meta.get("std"),
            "method": "random",
            "seed": seed,
        }
    else:
        module, dim = build_backbone("colour_hist")
        meta = {
            "architecture": "colour_hist",
            "embed_dim": dim,
            "input_size": model_meta.get("input_size"),
            "method": "colour_hist",
            "seed": seed,
        }
    backbone_dir = save_backbone(module, out / "backbone", meta)
    print(f"probe: embedding the {kind} baseline into {out}", file=sys.stderr)
    embed(model=str(backbone_dir), data=data, out_dir=str(out), **_embed_kwargs(embed_meta))
    return out


def _align(cells: pd.DataFrame, other_dir: Path) -> np.ndarray:
    """Features of ``other_dir`` in the row order of ``cells`` (by cell_id)."""
    import numpy as np

    feats, other, _, _ = load_embeddings(other_dir)
    pos = dict(zip(other["cell_id"], range(len(other)), strict=True))
    missing = [c for c in cells["cell_id"] if c not in pos]
    if missing:
        raise ProbeError(
            f"baseline {other_dir} lacks {len(missing)} of the evaluated cells (e.g. {missing[0]!r}); "
            "embed the same data for the baseline (or delete the folder so it is recomputed)"
        )
    return np.ascontiguousarray(feats[np.array([pos[c] for c in cells["cell_id"]])])


# ----------------------------------------------------------------------------------------------
# scoring


def _kappa(a: Sequence, b: Sequence) -> float:
    from ssl_cyto.data.agreement import cohen_kappa

    return float(cohen_kappa([str(v) for v in a], [str(v) for v in b]))


def _agreement_block(
    cells: pd.DataFrame, task: Task, rows: np.ndarray, preds: dict[str, np.ndarray], n_boot: int, seed: int
) -> dict | None:
    """Scores on re-annotated test cells: models vs gold / each read, beside the raters' agreement."""
    import numpy as np

    from ssl_cyto.evaluation.metrics import CI

    r1 = cells["reannot1"].to_numpy(dtype=object)[rows]
    r2 = cells["reannot2"].to_numpy(dtype=object)[rows]
    ok1 = _has_value(cells["reannot1"]).to_numpy()[rows]
    ok2 = _has_value(cells["reannot2"]).to_numpy()[rows]
    both = ok1 & ok2
    if not both.any():
        return None
    gold = cells["label"].astype(str).to_numpy()[rows][both]
    a1 = np.array([str(v) for v in r1[both]])
    a2 = np.array([str(v) for v in r2[both]])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(gold), size=(n_boot, len(gold)))

    def score(x, y) -> dict:
        correct = (np.asarray(x) == np.asarray(y)).astype(float)
        reps = correct[idx].mean(1)
        lo, hi = np.quantile(reps, [0.025, 0.975])
        return {"accuracy": CI(float(correct.mean()), float(lo), float(hi)).as_dict(), "kappa": _kappa(x, y)}

    out: dict[str, Any] = {"n_cells": int(both.sum()), "raters": {}, "models": {}}
    out["raters"]["gold vs reannot1"] = score(a1, gold)
    out["raters"]["gold vs reannot2"] = score(a2, gold)
    out["raters"]["reannot1 vs reannot2"] = score(a1, a2)
    names = np.array(task.classes, dtype=object)
    for model, p in preds.items():
        pn = np.array([str(v) for v in names[p[both]]])
        out["models"][model] = {
            "vs gold": score(pn, gold),
            "vs reannot1": score(pn, a1),
            "vs reannot2": score(pn, a2),
        }
    return out


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_").lower()


def probe(
    emb_dir: str | Path,
    protocol: str = "holdout20",
    fast: bool = False,
    baselines: str = "auto",
    baseline_dirs: dict[str, str | Path] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    min_cells: int | None = None,
    n_boot: int | None = None,
    command: str | Sequence[str] | None = None,
) -> dict:
    """Evaluate an embedding folder against the expert labels; write report.md, PNGs and probe.json.

    Args:
        emb_dir: folder written by ``ssl-cyto embed``.
        protocol: ``holdout20`` (stratified 80/20) or ``cv5`` (stratified 5-fold, pooled predictions).
        fast: fixed C (no sweep), 200 bootstrap replicates, no label-efficiency runs.
        baselines: ``auto`` (embed and evaluate the random-weights and colour-histogram baselines, or
            reuse them from ``EMB_DIR/baselines/``) or ``none``.
        baseline_dirs: extra or overriding baselines, name -> embedding folder of the same cells.
        seed: seed of the split, the probe's validation part, the subsampling and the bootstrap.
        out: output folder (default ``EMB_DIR/probe``).
        min_cells: classes with fewer labelled cells are not scored (default
            :data:`ssl_cyto.data.vocabulary.MIN_CELLS_TO_SCORE`).
        n_boot: bootstrap replicates (default 1000, ``fast``: 200).
        command: the command line to put at the top of the report (default: this process's argv).

    Returns:
        The content of ``probe.json`` (every number in the report), with ``"report"`` = its path.
    """
    import numpy as np

    from ssl_cyto.evaluation.metrics import (
        bootstrap_indices,
        bootstrap_metrics,
        paired_bootstrap_metrics,
        per_class_report,
    )
    from ssl_cyto.evaluation.report import markdown_table, write_report
    from ssl_cyto.retrieval.metrics import retrieval_metrics

    t0 = time.time()
    if protocol not in PROTOCOLS:
        raise ProbeError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    if baselines not in ("auto", "none"):
        raise ProbeError(f"--baselines must be 'auto' or 'none', got {baselines!r}")
    emb_dir = Path(emb_dir)
    out_dir = Path(out) if out else emb_dir / "probe"
    out_dir.mkdir(parents=True, exist_ok=True)
    n_boot = n_boot or (200 if fast else 1000)
    if min_cells is None:
        min_cells = _min_cells_default()

    feats, cells, model_meta, embed_meta = load_embeddings(emb_dir)
    split, split_note = load_or_make_split(emb_dir, cells, protocol, seed)
    tasks, notes = build_tasks(cells, split, protocol, min_cells)
    if not tasks:
        raise ProbeError(
            f"nothing to score in {emb_dir}: " + ("; ".join(notes) or "no labelled classes with enough cells")
        )

    # models: the evaluated embeddings first, then the baselines on the same cells
    arch = str(model_meta.get("architecture") or "unknown")
    method = str(model_meta.get("method") or "model")
    main_name = f"{method} ({arch})"
    models: dict[str, np.ndarray] = {main_name: feats}
    model_dirs: dict[str, str] = {main_name: str(emb_dir)}
    wanted: dict[str, Path | None] = {}
    is_random = bool(model_meta.get("random_init")) or method == "random"
    if baselines == "auto":
        if arch == "colour_hist":
            notes.append("the evaluated model is the colour histogram itself: no baselines computed")
        else:
            if not is_random:
                wanted["random"] = None
            else:
                notes.append(
                    "the evaluated model has random weights: the random baseline is the model itself"
                )
            wanted["colour"] = None
    for bname, bdir in (baseline_dirs or {}).items():
        wanted[bname] = Path(bdir)
    for name, given in wanted.items():
        d = given if given is not None else compute_baseline(name, emb_dir, model_meta, embed_meta, seed)
        label = {"random": f"random weights ({arch})", "colour": "colour histogram"}.get(name, name)
        models[label] = _align(cells, d)
        model_dirs[label] = str(d)

    fractions = () if fast else LABEL_FRACTIONS
    result: dict[str, Any] = {
        "emb_dir": str(emb_dir),
        "protocol": protocol,
        "seed": seed,
        "fast": fast,
        "n_boot": n_boot,
        "min_cells": min_cells,
        "models": model_dirs,
        "main_model": main_name,
        "model_meta": {
            k: model_meta.get(k)
            for k in ("architecture", "method", "embed_dim", "input_size", "weights_sha256")
        },
        "split": split_note,
        "grouped_by_patient": bool("patient" in cells.columns and _has_value(cells["patient"]).any()),
        "n_cells": len(cells),
        "n_labelled": int(_labelled(cells).sum()),
        "notes": notes,
        "tasks": {},
    }
    reference = _matek_reference()
    sections: list[tuple[str, str]] = []
    figures: list[Path] = []

    for ti, task in enumerate(tasks):
        print(f"probe: task {ti + 1}/{len(tasks)} {task.name}: {len(task.classes)} classes", file=sys.stderr)
        rows = task.test_rows
        fold_preds = {}
        for name, x in models.items():
            t1 = time.time()
            fold_preds[name] = run_classifiers(x, task, fast, seed, fractions)
            print(f"probe:   {name}: {time.time() - t1:.1f} s", file=sys.stderr)
        y = fold_preds[main_name].y_true
        idx = bootstrap_indices(len(y), n_boot, seed)
        tres: dict[str, Any] = {
            "kind": task.kind,
            "train_source": task.source_train,
            "test_source": task.source_test,
            "classes": task.classes,
            "excluded_classes": task.excluded,
            "n_test": int(len(y)),
            "n_train_per_fold": [int(len(tr)) for tr, _ in task.folds],
            "metrics": {},
            "vs_baselines": {},
            "retrieval": {},
            "per_class": {},
            "label_efficiency": {},
            "probe_info": {m: fp.info for m, fp in fold_preds.items()},
        }
        for name, fp in fold_preds.items():
            tres["metrics"][name] = {
                clf: {k: v.as_dict() for k, v in bootstrap_metrics(y, p, idx).items()}
                for clf, p in fp.preds.items()
            }
            names = np.array(task.classes + ["<none>"], dtype=object)
            tres["retrieval"][name] = retrieval_metrics(
                [task.classes[c] for c in y], [list(names[r]) for r in fp.neighbours], ks=(1, 5, 10)
            )
            tres["per_class"][name] = per_class_report(y, fp.preds["linear"], task.classes)
            for frac, by_clf in fp.efficiency.items():
                tres["label_efficiency"].setdefault(name, {})[frac] = {
                    clf: {
                        k: v.as_dict()
                        for k, v in bootstrap_metrics(y, p, idx, ("accuracy", "balanced_accuracy")).items()
                    }
                    for clf, p in by_clf.items()
                }
            if fractions:
                tres["label_efficiency"].setdefault(name, {})["1.0"] = {
                    clf: {k: tres["metrics"][name][clf][k] for k in ("accuracy", "balanced_accuracy")}
                    for clf in ("linear", "knn20")
                }
        main = fold_preds[main_name]
        for name, fp in fold_preds.items():
            if name == main_name:
                continue
            tres["vs_baselines"][name] = {
                clf: {
                    k: v.as_dict()
                    for k, v in paired_bootstrap_metrics(y, main.preds[clf], fp.preds[clf], idx).items()
                }
                for clf in CLASSIFIERS
            }
        if task.kind == "source" and "reannot1" in cells.columns:
            agree = _agreement_block(
                cells, task, rows, {m: fp.preds["linear"] for m, fp in fold_preds.items()}, n_boot, seed
            )
            if agree:
                tres["reannotation"] = agree
        png = out_dir / f"confusion_{_slug(task.name)}.png"
        _confusion_png(y, main.preds["linear"], task.classes, png, f"{main_name}, linear probe: {task.name}")
        figures.append(png)
        tres["confusion_png"] = png.name
        result["tasks"][task.name] = tres
        sections += _task_sections(task, tres, main_name, protocol, reference, png.name, markdown_table)

    result["seconds"] = round(time.time() - t0, 1)
    (out_dir / "probe.json").write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    intro = _intro_section(result, cells, embed_meta, markdown_table)
    data_desc = (
        f"{emb_dir} — {len(cells)} cells ({result['n_labelled']} labelled) from "
        + ", ".join(f"{s} ({n})" for s, n in cells["source"].astype(str).value_counts().sort_index().items())
        + (f"; embedded from {embed_meta.get('data')}" if embed_meta.get("data") else "")
    )
    report = write_report(
        out_dir / "report.md",
        title=f"Probe of {main_name} against expert labels ({protocol})",
        command=command,
        data=data_desc,
        sections=[intro, *sections],
        figures=None,
    )
    result["report"] = str(report)
    print(f"probe: wrote {report} in {result['seconds']} s", file=sys.stderr)
    return result


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def _parse_baseline(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--baseline takes NAME=EMB_DIR, got {text!r}")
    name, _, path = text.partition("=")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"--baseline takes NAME=EMB_DIR, got {text!r}")
    return name, path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto probe``."""
    parser.add_argument("emb_dir", metavar="EMB_DIR", help="embedding folder written by `ssl-cyto embed`")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="holdout20",
        help="holdout20: stratified 80/20 (DinoBloom); cv5: stratified 5-fold (Matek 2021)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help=f"fixed C={FAST_C}, 200 bootstrap replicates, no label-efficiency runs",
    )
    parser.add_argument(
        "--baselines",
        choices=("auto", "none"),
        default="auto",
        help="auto: embed (or reuse) random-weights and colour-histogram baselines in EMB_DIR/baselines/",
    )
    parser.add_argument(
        "--baseline",
        action="append",
        type=_parse_baseline,
        default=[],
        metavar="NAME=EMB_DIR",
        help="an extra (or overriding: random=..., colour=...) baseline embedding folder of the same cells",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of split, validation part, subsets and bootstrap"
    )
    parser.add_argument(
        "--min-cells",
        type=int,
        default=None,
        help="classes with fewer labelled cells are not scored (default: MIN_CELLS_TO_SCORE)",
    )
    parser.add_argument(
        "--n-boot", type=int, default=None, help="bootstrap replicates (default 1000; --fast 200)"
    )
    parser.add_argument("--out", default=None, help="output folder (default EMB_DIR/probe)")


def main(args: argparse.Namespace) -> int:
    """Run ``ssl-cyto probe``; user errors print a message and return 2."""
    try:
        result = probe(
            args.emb_dir,
            protocol=args.protocol,
            fast=args.fast,
            baselines=args.baselines,
            baseline_dirs=dict(args.baseline),
            seed=args.seed,
            out=args.out,
            min_cells=args.min_cells,
            n_boot=args.n_boot,
        )
    except (ValueError, FileNotFoundError) as exc:  # ProbeError, BackboneError, ... : user errors
        print(f"ssl-cyto probe: error: {exc}", file=sys.stderr)
        return 2
    print(result["report"])
    return 0
