"""The probe's labelled cells, its seeded splits (``split.parquet``) and the tasks built on them.

* **Labels**: only cells with an expert label take part; ``UNC`` (AML-LMU's "unassignable",
  :data:`ssl_cyto.formats.annotations.UNASSIGNABLE`) is not a label.
* **Splits** (seeded, saved to ``EMB_DIR/split.parquet`` and reused while the labelled cells are the
  same, so baselines and later runs share them): ``holdout20`` = this project's seeded stratified
  80/20 hold-out (not DinoBloom's: that is a fixed published split, ``--protocol dinobloom`` in
  :mod:`ssl_cyto.evaluation.dinobloom`); ``cv5`` = stratified 5-fold cross-validation with out-of-fold predictions pooled
  (Matek et al., Blood 2021). Strata are (source, label). When ``cells.parquet`` has a ``patient``
  column the split is grouped by patient (scikit-learn ``StratifiedGroupKFold``); otherwise cells of
  one patient may fall on both sides, and the report says so.
* **Tasks**: per source, classes with fewer than ``min_cells`` cells are left out (and listed). With
  several sources, cross-dataset tasks train on one source and test on another through the shared
  vocabulary (:func:`ssl_cyto.data.vocabulary.to_shared`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from ssl_cyto.data.vocabulary import to_shared
from ssl_cyto.evaluation.protocol import PROTOCOLS, SPLIT_FILE, ProbeError
from ssl_cyto.formats.annotations import UNASSIGNABLE
from ssl_cyto.formats.embeddings import EmbeddingFolder, read_embedding_folder
from ssl_cyto.formats.errors import SslCytoError

__all__ = [
    "Task",
    "build_tasks",
    "has_value",
    "labelled",
    "load_embeddings",
    "load_or_make_split",
    "make_split",
]


def load_embeddings(emb_dir: str | Path) -> EmbeddingFolder:
    """An embedding folder for the probe: its vectors as ``(N, D)`` float32 in memory, cells copied.

    Read through :func:`ssl_cyto.formats.embeddings.read_embedding_folder` (which checks the row
    counts and the unique ``cell_id`` and adds missing ``source`` / ``label`` / ``reannot*`` columns).

    Raises:
        ProbeError: the folder cannot be read (with the reader's message).
    """
    try:
        folder = read_embedding_folder(emb_dir)
    except SslCytoError as exc:
        raise ProbeError(str(exc)) from exc
    return replace(
        folder,
        vectors=np.asarray(folder.vectors, dtype=np.float32),
        cells=folder.cells.reset_index(drop=True).copy(),
        model=dict(folder.model),
        embed=dict(folder.embed),
    )


def has_value(series: pd.Series) -> pd.Series:
    """True where a column holds a non-empty value."""
    return series.notna() & (series.astype(str).str.strip() != "")


def labelled(cells: pd.DataFrame) -> pd.Series:
    """Cells with an expert label (``UNC``, AML-LMU's "unassignable", is not a label)."""
    return has_value(cells["label"]) & (cells["label"].astype(str) != UNASSIGNABLE)


def make_split(cells: pd.DataFrame, protocol: str, seed: int = 0) -> pd.DataFrame:
    """A seeded stratified split of the labelled cells: columns ``cell_id`` and ``split`` or ``fold``.

    Strata are (source, label). ``holdout20``: per stratum, ``round(0.2 n)`` cells (at least 1 when
    n >= 2, never all) go to ``test``, the rest to ``train``. ``cv5``: per stratum the shuffled cells are
    dealt to folds 0..4 from a random starting fold, so fold sizes differ by at most one per stratum.
    With a ``patient`` column, scikit-learn's ``StratifiedGroupKFold`` keeps each patient in one fold
    (``holdout20`` uses its fold 0 as test). The result does not depend on the row order of ``cells``.

    Raises:
        ProbeError: an unknown protocol, or no labelled cells.
    """
    if protocol not in PROTOCOLS or protocol == "dinobloom":
        raise ProbeError(f"make_split makes holdout20 or cv5 splits, not {protocol!r}")
    lab = cells.loc[labelled(cells)].sort_values("cell_id", kind="stable")
    if lab.empty:
        raise ProbeError("no labelled cells: the probe needs cells with a 'label' (expert class)")
    ids = lab["cell_id"].to_numpy()
    strata = (lab["source"].astype(str) + "\x1f" + lab["label"].astype(str)).to_numpy()
    fold = np.full(len(lab), -1, dtype=np.int64)
    if "patient" in lab.columns and has_value(lab["patient"]).all():
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
    path = Path(emb_dir) / SPLIT_FILE
    col = "split" if protocol == "holdout20" else "fold"
    wanted = set(cells.loc[labelled(cells), "cell_id"])
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
    excluded: dict[str, int] = field(default_factory=dict)  # class -> cells, below the minimum

    @property
    def test_rows(self) -> np.ndarray:
        """Row indices of the test cells of every fold, in fold order (the pooled predictions' order)."""
        return np.concatenate([te for _, te in self.folds])


def _fold_of(cells: pd.DataFrame, split: pd.DataFrame, protocol: str) -> tuple[np.ndarray, list[int]]:
    """Per row of ``cells``: the fold code (-2: not in the split); and the test folds to iterate."""
    m = cells[["cell_id"]].merge(split, on="cell_id", how="left")
    if protocol == "holdout20":
        s = m["split"].to_numpy()
        fold = np.where(s == "test", 0, np.where(s == "train", 1, -2))
        return fold.astype(np.int64), [0]
    f = m["fold"].to_numpy(dtype=float)
    return np.where(np.isnan(f), -2, f).astype(np.int64), [0, 1, 2, 3, 4]


def _folds_for(
    train_mask: np.ndarray, test_mask: np.ndarray, fold: np.ndarray, test_folds: list[int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) per test fold; folds without training or test cells are dropped."""
    out = []
    for k in test_folds:
        tr = np.flatnonzero(train_mask & (fold >= 0) & (fold != k))
        te = np.flatnonzero(test_mask & (fold == k))
        if len(tr) and len(te):
            out.append((tr, te))
    return out


def _counts(values: Iterable[str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        if v is not None:
            out[v] = out.get(v, 0) + 1
    return out


def build_tasks(
    cells: pd.DataFrame, split: pd.DataFrame, protocol: str, min_cells: int, cross: bool = True
) -> tuple[list[Task], list[str]]:
    """Per-source tasks and, with several labelled sources, cross-dataset tasks. Returns (tasks, notes)."""
    notes: list[str] = []
    fold, test_folds = _fold_of(cells, split, protocol)
    is_labelled = labelled(cells).to_numpy()
    source = cells["source"].astype(str).to_numpy()
    label = cells["label"].astype(str).to_numpy()
    tasks: list[Task] = []

    sources = sorted(set(source[is_labelled]))
    for src in sources:
        in_src = is_labelled & (source == src)
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
        fl = _folds_for(mask, mask, fold, test_folds)
        if not fl:
            notes.append(f"source {src}: the split leaves no training or no test cells; not scored")
            continue
        tasks.append(Task(src, "source", src, src, keep, codes, fl, excluded))

    if cross and len(sources) >= 2:
        shared = np.array(
            [
                to_shared(s, lab) if ok else None
                for s, lab, ok in zip(source, label, is_labelled, strict=True)
            ],
            dtype=object,
        )
        for a in sources:
            for b in sources:
                if a == b:
                    continue
                ca = _counts(shared[is_labelled & (source == a)])
                cb = _counts(shared[is_labelled & (source == b)])
                keep = sorted(c for c in set(ca) & set(cb) if ca[c] >= min_cells and cb[c] >= min_cells)
                if len(keep) < 2:
                    notes.append(
                        f"cross {a} -> {b}: fewer than 2 shared classes with >= {min_cells} cells each"
                    )
                    continue
                code = {c: i for i, c in enumerate(keep)}
                codes = np.array([code.get(s, -1) if s is not None else -1 for s in shared])
                fl = _folds_for((codes >= 0) & (source == a), (codes >= 0) & (source == b), fold, test_folds)
                if fl:
                    tasks.append(Task(f"{a} -> {b} (shared vocabulary)", "cross", a, b, keep, codes, fl))
    return tasks, notes
