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

from ssl_cyto.data.loading import eval_loader
from ssl_cyto.embedding.runner import embed
from ssl_cyto.evaluation.protocol import ProbeError
from ssl_cyto.evaluation.splits import load_embeddings
from ssl_cyto.formats.catalog import CATALOG_COLUMNS
from ssl_cyto.formats.embeddings import CELLS_FILE, EMBEDDINGS_FILE, EmbeddingFolder, write_embedding_folder
from ssl_cyto.formats.model_json import read_model_json
from ssl_cyto.models.factory import build_backbone
from ssl_cyto.models.weights import save_backbone
from ssl_cyto.transforms import EvalTransform

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
    cells = pd.read_parquet(emb_dir / CELLS_FILE, columns=["cell_id"])
    folder = EmbeddingFolder(emb_dir, np.zeros((0, 0), np.float32), cells, model_meta, embed_meta)
    return compute_baselines([kind], folder, seed)[kind]


def _one_pass(
    modules: dict[str, tuple[torch.nn.Module, dict]], data: str, keep: set[str], embed_meta: dict
) -> tuple[dict[str, list[np.ndarray]], list[dict]]:
    """Decode every cell of ``data`` once; every baseline embeds the same decoded batch.

    The images are resized and cropped as for the evaluated model and kept as raw [0, 1] pixels;
    each baseline normalises them with its own ``mean``/``std`` (identity for the colour histogram).
    """
    sizes = {int(m["input_size"]) for _, m in modules.values()}
    if len(sizes) != 1:
        raise ProbeError(
            f"the baselines ask for different input sizes {sorted(sizes)}; embed them separately"
        )
    opts = _embed_kwargs(embed_meta)
    loader = eval_loader(
        data,
        EvalTransform(sizes.pop(), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        batch_size=int(opts.get("batch_size", 64)),
        num_workers=int(opts.get("num_workers", 0)),
    )
    norms = {
        k: (torch.tensor(m["mean"]).view(1, 3, 1, 1), torch.tensor(m["std"]).view(1, 3, 1, 1))
        for k, (_, m) in modules.items()
    }
    feats: dict[str, list[np.ndarray]] = {k: [] for k in modules}
    rows: list[dict] = []
    with torch.no_grad():
        for images, batch_rows in loader:
            sel = [i for i, r in enumerate(batch_rows) if r["cell_id"] in keep]
            if not sel:
                continue
            x = images[sel].float()
            for k, (module, _) in modules.items():
                mean, std = norms[k]
                feats[k].append(module((x - mean) / std).float().numpy())
            rows += [batch_rows[i] for i in sel]
    return feats, rows


def compute_baselines(kinds: list[str], folder: EmbeddingFolder, seed: int) -> dict[str, Path]:
    """Embed the baselines ``kinds`` in one pass over the images (one decode per cell); reuse saved ones.

    Each goes to ``EMB_DIR/baselines/<kind>/`` (its backbone in ``.../backbone/``), an embedding
    folder of the evaluated cells, and is reused from there on later runs.

    Raises:
        ProbeError: ``embed.json`` does not say which data was embedded, or ``model.json`` lacks the
            architecture (random baseline).
    """
    outs = {k: Path(folder.path) / "baselines" / k for k in kinds}
    todo = [k for k, o in outs.items() if not ((o / EMBEDDINGS_FILE).exists() and (o / CELLS_FILE).exists())]
    if not todo:
        return outs
    data = folder.embed.get("data")
    if not data:
        raise ProbeError(
            f"{folder.path / 'embed.json'} has no 'data' entry, so the {', '.join(todo)} baseline(s) cannot be "
            f"embedded; embed them yourself and pass `ssl-cyto probe --baseline NAME=DIR`, or use `ssl-cyto probe --baselines none`"
        )
    modules = {}
    for k in todo:
        module, meta = _baseline_backbone(k, folder.path, folder.model, seed)
        meta = read_model_json(save_backbone(module, outs[k] / "backbone", meta))
        modules[k] = (module.eval(), meta)
    print(f"probe: embedding the {', '.join(todo)} baseline(s) in one pass over {data}", file=sys.stderr)
    feats, rows = _one_pass(modules, str(data), set(folder.cells["cell_id"]), folder.embed)
    cells = pd.DataFrame([{c: r.get(c) for c in CATALOG_COLUMNS} for r in rows], columns=CATALOG_COLUMNS)
    for k in todo:
        meta = modules[k][1]
        vectors = np.concatenate(feats[k]) if feats[k] else np.zeros((0, int(meta["embed_dim"])), np.float32)
        embed_meta = {"data": data, "baseline_of": str(folder.path), "one_pass_with": todo}
        write_embedding_folder(outs[k], vectors.astype(np.float32), cells, meta, embed_meta)
    return outs


def align_features(cells: pd.DataFrame, other_dir: Path) -> np.ndarray:
    """Features of the embedding folder ``other_dir`` in the row order of ``cells`` (by ``cell_id``).

    Raises:
        ProbeError: ``other_dir`` lacks some of the cells.
    """
    other = load_embeddings(other_dir)
    pos = pd.Series(np.arange(len(other.cells)), index=other.cells["cell_id"].to_numpy())
    rows = pos.reindex(cells["cell_id"].to_numpy())
    if rows.isna().any():
        missing = cells["cell_id"].to_numpy()[rows.isna().to_numpy()]
        raise ProbeError(
            f"baseline {other_dir} lacks {len(missing)} of the evaluated cells (e.g. {missing[0]!r}); "
            "embed the same data for the baseline (or delete the folder so it is recomputed)"
        )
    return np.ascontiguousarray(other.vectors[rows.to_numpy(dtype=np.int64)])


def resolve_baseline(name: str, spec: str | Path | None, folder: EmbeddingFolder, seed: int) -> Path:
    """The embedding folder of the baseline ``name``: ``spec`` when given, else the computed one.

    The one place where a baseline SPEC becomes an embedding folder of the same cells.
    """
    if spec is not None:
        return Path(spec)
    return compute_baseline(name, folder.path, folder.model, folder.embed, seed)


def models_under_test(
    folder: EmbeddingFolder,
    baselines: str,
    baseline_dirs: dict[str, str | Path] | None,
    seed: int,
    notes: list[str],
) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """The evaluated model first, then the baselines on the same cells: (main name, features, folders)."""
    model_meta, cells = folder.model, folder.cells
    arch = str(model_meta.get("architecture") or "unknown")
    method = str(model_meta.get("method") or "model")
    main_name = f"{method} ({arch})"
    models: dict[str, np.ndarray] = {main_name: folder.vectors}
    model_dirs: dict[str, str] = {main_name: str(folder.path)}
    wanted: dict[str, str | Path | None] = {}
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
        wanted[bname] = bdir
    computed = [k for k, v in wanted.items() if v is None]
    if computed:
        compute_baselines(computed, folder, seed)
    for name, given in wanted.items():
        d = resolve_baseline(name, given, folder, seed)
        label = BASELINE_LABELS.get(name, name).format(arch=arch)
        models[label] = align_features(cells, d)
        model_dirs[label] = str(d)
    return main_name, models, model_dirs
