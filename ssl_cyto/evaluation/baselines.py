"""The two baselines every probe is compared with, embedded from the same cells as the model.

On stained blood cells colour alone is a strong cue, and a random network already gives features
that are far from useless, so a representation must beat both before it can claim to have learned
morphology:

* ``random``: the evaluated architecture (and ``backbone_kwargs``, input size, normalisation of
  ``EMB_DIR/model.json``) with seeded random weights;
* ``colour``: the colour-histogram floor, backbone ``colour_hist``
  (:class:`ssl_cyto.models.colour_hist.ColourHistogram`).

Both are saved as backbone folders (:func:`ssl_cyto.models.weights.save_backbone`) and embedded
through the same :func:`ssl_cyto.embedding.runner.embed` as any encoder, into
``EMB_DIR/baselines/<kind>/``, and reused from there on later runs.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ssl_cyto.embedding.runner import embed
from ssl_cyto.evaluation.protocol import ProbeError
from ssl_cyto.evaluation.splits import load_embeddings
from ssl_cyto.formats.embeddings import CELLS_FILE, EMBEDDINGS_FILE
from ssl_cyto.models.factory import build_backbone
from ssl_cyto.models.weights import save_backbone

__all__ = [
    "BASELINE_KINDS",
    "BASELINE_LABELS",
    "EMBED_OPTIONS_REUSED",
    "align_features",
    "compute_baseline",
    "models_under_test",
]

BASELINE_KINDS = ("random", "colour")
EMBED_OPTIONS_REUSED = ("batch_size", "num_workers", "limit", "chunk_batches")
BASELINE_LABELS = {"random": "random weights ({arch})", "colour": "colour histogram"}


def _embed_kwargs(embed_meta: dict) -> dict:
    """Options of the original ``embed`` run to repeat for a baseline (same cells: ``limit`` matters).

    ``embed.json`` keeps them under ``options``; the device is left to ``auto`` (the probe may run
    elsewhere), the seed does not apply (baselines are given as backbone folders).
    """
    params = inspect.signature(embed).parameters
    given = {**{k: v for k, v in embed_meta.items() if k != "options"}, **(embed_meta.get("options") or {})}
    return {k: given[k] for k in EMBED_OPTIONS_REUSED if k in given and k in params}


def _baseline_backbone(kind: str, emb_dir: Path, model_meta: dict, seed: int) -> tuple[torch.nn.Module, dict]:
    """The baseline's module and its ``model.json`` content."""
    if kind == "random":
        arch = model_meta.get("architecture")
        if not arch:
            raise ProbeError(
                f"{emb_dir / 'model.json'} has no 'architecture'; cannot build the random baseline"
            )
        kwargs = dict(model_meta.get("backbone_kwargs") or {})
        torch.manual_seed(seed)
        module, dim = build_backbone(arch, **kwargs)
        return module, {
            "architecture": arch,
            "backbone_kwargs": kwargs,
            "embed_dim": dim,
            "input_size": model_meta.get("input_size"),
            "mean": model_meta.get("mean"),
            "std": model_meta.get("std"),
            "method": "random",
            "seed": seed,
        }
    if kind == "colour":
        module, dim = build_backbone("colour_hist")
        return module, {
            "architecture": "colour_hist",
            "embed_dim": dim,
            "input_size": model_meta.get("input_size"),
            "method": "colour_hist",
            "seed": seed,
        }
    raise ProbeError(
        f"unknown baseline {kind!r}; choose one of {BASELINE_KINDS} or pass `ssl-cyto probe --baseline NAME=DIR`"
    )


def compute_baseline(kind: str, emb_dir: Path, model_meta: dict, embed_meta: dict, seed: int) -> Path:
    """Embed the same data with a baseline; reuse ``EMB_DIR/baselines/<kind>/`` when it is there.

    Args:
        kind: ``random`` or ``colour``.
        emb_dir: the evaluated embedding folder.
        model_meta: its ``model.json``.
        embed_meta: its ``embed.json`` (``data`` and the reused ``options``).
        seed: seed of the random weights.

    Returns:
        The baseline's embedding folder (its backbone in ``.../backbone/``).

    Raises:
        ProbeError: ``embed.json`` does not say which data was embedded, or ``model.json`` lacks the
            architecture (random baseline).
    """
    emb_dir = Path(emb_dir)
    out = emb_dir / "baselines" / kind
    if (out / EMBEDDINGS_FILE).exists() and (out / CELLS_FILE).exists():
        return out
    data = embed_meta.get("data")
    if not data:
        raise ProbeError(
            f"{emb_dir / 'embed.json'} has no 'data' entry, so the {kind} baseline cannot be embedded; "
            f"embed it yourself and pass `ssl-cyto probe --baseline {kind}=DIR`, or use --baselines none"
        )
    module, meta = _baseline_backbone(kind, emb_dir, model_meta, seed)
    backbone_dir = save_backbone(module, out / "backbone", meta)
    print(f"probe: embedding the {kind} baseline into {out}", file=sys.stderr)
    embed(model=str(backbone_dir), data=data, out_dir=str(out), **_embed_kwargs(embed_meta))
    return out


def align_features(cells: pd.DataFrame, other_dir: Path) -> np.ndarray:
    """Features of the embedding folder ``other_dir`` in the row order of ``cells`` (by ``cell_id``).

    Raises:
        ProbeError: ``other_dir`` lacks some of the cells.
    """
    feats, other, _, _ = load_embeddings(other_dir)
    pos = dict(zip(other["cell_id"], range(len(other)), strict=True))
    missing = [c for c in cells["cell_id"] if c not in pos]
    if missing:
        raise ProbeError(
            f"baseline {other_dir} lacks {len(missing)} of the evaluated cells (e.g. {missing[0]!r}); "
            "embed the same data for the baseline (or delete the folder so it is recomputed)"
        )
    return np.ascontiguousarray(feats[np.array([pos[c] for c in cells["cell_id"]])])


def models_under_test(
    emb_dir: Path,
    feats: np.ndarray,
    cells: pd.DataFrame,
    model_meta: dict,
    embed_meta: dict,
    baselines: str,
    baseline_dirs: dict[str, str | Path] | None,
    seed: int,
    notes: list[str],
) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """The evaluated model first, then the baselines on the same cells: (main name, features, folders)."""
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
        label = BASELINE_LABELS.get(name, name).format(arch=arch)
        models[label] = align_features(cells, d)
        model_dirs[label] = str(d)
    return main_name, models, model_dirs
