"""Embed every cell of shards or a folder with a backbone: ``ssl-cyto embed``.

Writes into ``EMB_DIR``:

* ``embeddings.npy`` -- float32 ``(N, D)``; row ``i`` belongs to row ``i`` of ``cells.parquet``;
* ``cells.parquet`` -- the catalog columns (``CATALOG_COLUMNS``) of the embedded cells;
* ``model.json`` -- a copy of the backbone's ``model.json`` (weights sha256 included);
* ``embed.json`` -- the data spec, options, counts, timing and hardware;
* ``backbone/`` -- only when ``--model`` is a ``.ckpt`` or a timm / ``tiny_cnn`` name (seeded random
  weights): the exact weights used, so the embedding (and later queries) can be reproduced.

**Order.** Rows are sorted by ``cell_id`` (ascending, Python string order), whatever the data
loader's order (which for shards depends on the number of workers). Every cell appears once;
unreadable images are skipped with a warning by the loader and counted in ``embed.json``.

**Resuming.** Every ``chunk_batches`` batches the finished embeddings are written to
``EMB_DIR/.partial/chunk-XXXXX.npy`` with their rows in ``chunk-XXXXX.parquet`` (the ``.npy`` is
renamed into place last, so a chunk either exists whole or not at all). A rerun with the same
model and data continues: catalog/folder data are filtered to the cells not yet embedded before
anything is read; for shards the completed cells are read again but not re-embedded. A rerun
with a different model or data is refused unless ``overwrite=True`` (``--overwrite``).

Forward passes run under ``torch.no_grad()`` with automatic mixed precision on CUDA (bfloat16
where supported, else float16); features are stored as float32.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["EmbedError", "ModelMismatchError", "add_arguments", "embed", "main", "ORDER"]

ORDER = "rows sorted by cell_id (ascending, Python string order)"
PARTIAL = ".partial"
STATE = "state.json"
OUTPUT_FILES = ("embeddings.npy", "cells.parquet", "model.json", "embed.json")


class EmbedError(ValueError):
    """Embedding cannot proceed (bad option, inconsistent output folder); the message says how to fix it."""


class ModelMismatchError(EmbedError):
    """The output folder holds (partial) embeddings of another model or other data."""


def _catalog_columns() -> list[str]:
    from ssl_cyto.data.catalog import CATALOG_COLUMNS

    return list(CATALOG_COLUMNS)


def _hardware() -> str:
    from ssl_cyto.evaluation.report import hardware_summary

    return hardware_summary()


def _data_id(data: str) -> str:
    """A stable identity of a data spec: absolute path when it is a local path, else the string."""
    path = Path(data)
    return str(path.resolve()) if path.exists() else data


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EmbedError(f"--device {device}: CUDA is not available here; use --device cpu or auto")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise EmbedError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    return device


def _prepare_model(model: str, out_dir: Path, seed: int, input_size: int | None) -> tuple[Any, dict, Path]:
    """Load the backbone; returns ``(module, model_meta, folder holding weights.pt + model.json)``.

    A backbone folder / model.json is used in place; a ``.ckpt`` or a name is saved first into a
    temporary folder inside ``out_dir`` (moved to ``out_dir/backbone`` once the run is accepted).
    """
    from ssl_cyto.models.backbones import load_backbone, save_backbone

    path = Path(model)
    if input_size is not None and path.exists():
        raise EmbedError(
            f"--input-size applies to a model given by name only; {model} records its own input size"
        )
    module, meta = load_backbone(str(model), seed=seed, input_size=input_size)
    if path.exists() and path.suffix != ".ckpt":
        folder = path if path.is_dir() else path.parent
        meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        return module, meta, folder.resolve()
    tmp = out_dir / ".backbone-tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_backbone(module, tmp, meta)
    saved = json.loads((tmp / "model.json").read_text(encoding="utf-8"))
    saved["random_init"] = bool(meta.get("random_init", False))
    if "checkpoint" in meta:
        saved["checkpoint"] = meta["checkpoint"]
    (tmp / "model.json").write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    return module, saved, tmp


def _fingerprint(meta: dict, data: str, limit: int | None) -> dict[str, Any]:
    return {
        "weights_sha256": meta.get("weights_sha256"),
        "architecture": meta.get("architecture"),
        "input_size": meta.get("input_size"),
        "data": _data_id(data),
        "limit": limit,
    }


def _mismatch(old: dict, new: dict) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]


def _clear_outputs(out_dir: Path) -> None:
    for name in (*OUTPUT_FILES, "index.faiss", "index.json"):
        (out_dir / name).unlink(missing_ok=True)
    for name in (PARTIAL, "backbone"):
        if (out_dir / name).exists():
            shutil.rmtree(out_dir / name)


def _completed_chunks(partial: Path) -> list[tuple[Path, Path]]:
    """``(npy, parquet)`` pairs of complete chunks in index order (stray temporary files removed)."""
    for tmp in partial.glob("*.tmp*"):
        tmp.unlink()
    pairs = []
    for npy in sorted(partial.glob("chunk-*.npy")):
        rows = npy.with_suffix(".parquet")
        if rows.exists():
            pairs.append((npy, rows))
    return pairs


def _write_chunk(partial: Path, index: int, feats: list, rows: list[dict], columns: list[str]) -> None:
    import numpy as np
    import pandas as pd

    stem = partial / f"chunk-{index:05d}"
    arr = np.concatenate(feats).astype(np.float32, copy=False)
    if arr.shape[0] != len(rows):
        raise RuntimeError(f"internal error: {arr.shape[0]} embeddings for {len(rows)} rows")
    df = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    df.to_parquet(f"{stem}.parquet.tmp", index=False)
    os.replace(f"{stem}.parquet.tmp", f"{stem}.parquet")
    with open(f"{stem}.npy.tmp", "wb") as fh:
        np.save(fh, arr)
    os.replace(f"{stem}.npy.tmp", f"{stem}.npy")  # the chunk counts as done from here on


def _assemble(out_dir: Path, chunks: list[tuple[Path, Path]], columns: list[str]) -> tuple[int, int]:
    """Merge the chunks into ``embeddings.npy`` + ``cells.parquet`` sorted by cell_id; returns (n, dim)."""
    import numpy as np
    import pandas as pd

    if not chunks:
        raise EmbedError(
            f"{out_dir}: no cell could be embedded (all images unreadable, or the data is empty)"
        )
    frames = [pd.read_parquet(rows) for _, rows in chunks]
    sizes = [len(f) for f in frames]
    cells = pd.concat(frames, ignore_index=True)
    dup = cells["cell_id"][cells["cell_id"].duplicated()]
    if len(dup):
        raise EmbedError(
            f"the data yields cell_id {dup.iloc[0]!r} (and {len(dup) - 1} more) more than once; cell ids must be "
            "unique (were the same cells packed twice?)"
        )
    order = np.argsort(cells["cell_id"].to_numpy(dtype=object), kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    dim = int(np.load(chunks[0][0], mmap_mode="r").shape[1])
    tmp = out_dir / "embeddings.npy.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(cells), dim))
    start = 0
    for (npy, _), size in zip(chunks, sizes, strict=True):
        block = np.load(npy)
        if block.shape != (size, dim):
            raise EmbedError(
                f"{npy}: shape {block.shape} does not match its rows ({size}, {dim}); rerun with --overwrite"
            )
        out[position[start : start + size]] = block
        start += size
    out.flush()
    del out
    sorted_cells = cells.iloc[order].reset_index(drop=True)[columns]
    sorted_cells.to_parquet(out_dir / "cells.parquet.tmp", index=False)
    os.replace(out_dir / "cells.parquet.tmp", out_dir / "cells.parquet")
    os.replace(tmp, out_dir / "embeddings.npy")
    return len(cells), dim


def embed(
    model: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    limit: int | None = None,
    seed: int = 0,
    input_size: int | None = None,
    chunk_batches: int = 50,
    overwrite: bool = False,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> Path:
    """Embed every cell of ``data`` with ``model`` into ``out_dir`` (see the module docstring).

    Args:
        model: an exported backbone folder, its ``model.json``, a training ``.ckpt``, or a timm /
            ``tiny_cnn`` name (seeded random weights, saved into ``out_dir/backbone``).
        data: shards, a shard pattern, a catalog.parquet, an image folder or ``synth:<layout>``
            (anything :func:`ssl_cyto.data.datamodule.eval_loader` reads).
        out_dir: the embedding folder to write.
        batch_size: cells per forward pass.
        num_workers: data-loading worker processes.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``.
        limit: embed only the first ``limit`` cells in loader order (catalog order for folders).
        seed: seed of the random weights when ``model`` is a name.
        input_size: input size for a model given by name (default: the backbone's default).
        chunk_batches: batches per partial chunk (the resume granularity).
        overwrite: replace existing outputs / partial results of another model or data.
        progress: tqdm progress bar on stderr.
        on_chunk: called with the chunk index after each chunk is written (progress hooks, tests).

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ModelMismatchError: ``out_dir`` holds embeddings of another model/data and not ``overwrite``.
        EmbedError: bad options or nothing to embed.
    """
    import torch

    from ssl_cyto.data.datamodule import eval_loader, resolve_data
    from ssl_cyto.models.backbones import eval_transform_from_meta

    if batch_size < 1 or chunk_batches < 1:
        raise EmbedError(f"batch_size ({batch_size}) and chunk_batches ({chunk_batches}) must be >= 1")
    if limit is not None and limit < 1:
        raise EmbedError(f"limit must be >= 1, got {limit}")
    data = str(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = _resolve_device(device)
    t_start = time.perf_counter()

    module, meta, model_folder = _prepare_model(str(model), out, seed, input_size)
    fp = _fingerprint(meta, data, limit)
    tmp_backbone = out / ".backbone-tmp"

    done_json = out / "embed.json"
    partial = out / PARTIAL
    if done_json.exists() and not overwrite:
        old = json.loads(done_json.read_text(encoding="utf-8")).get("fingerprint", {})
        diff = _mismatch(old, fp)
        if tmp_backbone.exists():
            shutil.rmtree(tmp_backbone)
        if diff:
            raise ModelMismatchError(
                f"{out} already holds embeddings of another model or data ({'; '.join(diff)}); "
                "pass --overwrite to replace them or choose another --out"
            )
        if (out / "embeddings.npy").exists():
            return out  # already complete with this model and data
    if (partial / STATE).exists() and not overwrite:
        old = json.loads((partial / STATE).read_text(encoding="utf-8"))
        diff = _mismatch(old, fp)
        if diff:
            if tmp_backbone.exists():
                shutil.rmtree(tmp_backbone)
            raise ModelMismatchError(
                f"{partial} holds a partial embedding of another model or data ({'; '.join(diff)}); "
                "pass --overwrite to discard it, or rerun with the original model and data to resume"
            )
    if overwrite:
        _clear_outputs(out)
    if tmp_backbone.exists():  # commit the backbone of a .ckpt / random-weight name
        final = out / "backbone"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_backbone, final)
        model_folder = final.resolve()
    partial.mkdir(exist_ok=True)
    (partial / STATE).write_text(json.dumps(fp, indent=2) + "\n", encoding="utf-8")

    columns = _catalog_columns()
    chunks = _completed_chunks(partial)
    done: set[str] = set()
    for _, rows_file in chunks:
        import pandas as pd

        done.update(pd.read_parquet(rows_file, columns=["cell_id"])["cell_id"].tolist())
    resumed = len(done)

    res = resolve_data(data)
    transform = eval_transform_from_meta(meta)
    expected: int | None
    to_read: int | None
    if res.kind == "catalog":
        assert res.catalog is not None
        cat = res.catalog if limit is None else res.catalog.iloc[:limit]
        expected = len(cat)
        todo = cat[~cat["cell_id"].isin(done)] if done else cat
        source: Any = todo
        to_read = len(todo)
    else:
        source = res
        expected = res.n_cells if limit is None else min(limit, res.n_cells or limit)
        to_read = None if expected is None else expected
    module = module.to(dev).eval()
    use_amp = dev.startswith("cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=to_read, desc="embed", unit="cell", file=sys.stderr, dynamic_ncols=True)
    feats: list[np.ndarray] = []
    rows: list[dict] = []
    batches_in_chunk = 0
    chunk_index = len(chunks)
    seen = 0  # cells met in loader order (for limit on shard streams)
    embedded_now = 0
    skipped_done = 0
    if res.kind == "catalog" and to_read == 0:
        loader: Any = []
    else:
        loader = eval_loader(source, transform, batch_size=batch_size, num_workers=num_workers)
    with torch.no_grad():
        for images, batch_rows in loader:
            if res.kind != "catalog":
                keep = []
                skipped_here = 0
                for i, row in enumerate(batch_rows):
                    if limit is not None and seen >= limit:
                        break
                    seen += 1
                    if row["cell_id"] in done:
                        skipped_here += 1
                    else:
                        keep.append(i)
                skipped_done += skipped_here
                if bar is not None:
                    bar.update(len(keep) + skipped_here)
                if len(keep) < len(batch_rows):
                    images = images[keep]
                    batch_rows = [batch_rows[i] for i in keep]
            if batch_rows:
                x = images.to(dev, non_blocking=True)
                with torch.autocast(device_type="cuda", dtype=amp_dtype, enabled=use_amp):
                    f = module(x)
                f = f.float().cpu().numpy()
                if f.ndim != 2 or f.shape[0] != len(batch_rows):
                    raise EmbedError(
                        f"the backbone returned features of shape {tuple(f.shape)}; expected (B, D)"
                    )
                feats.append(f)
                rows.extend(batch_rows)
                embedded_now += len(batch_rows)
                batches_in_chunk += 1
                if bar is not None and res.kind == "catalog":
                    bar.update(len(batch_rows))
            if batches_in_chunk >= chunk_batches:
                _write_chunk(partial, chunk_index, feats, rows, columns)
                if on_chunk is not None:
                    on_chunk(chunk_index)
                chunk_index += 1
                feats, rows, batches_in_chunk = [], [], 0
            if limit is not None and res.kind != "catalog" and seen >= limit:
                break
    if rows:
        _write_chunk(partial, chunk_index, feats, rows, columns)
        if on_chunk is not None:
            on_chunk(chunk_index)
    if bar is not None:
        bar.close()

    n, dim = _assemble(out, _completed_chunks(partial), columns)
    model_json = dict(meta)
    (out / "model.json").write_text(json.dumps(model_json, indent=2) + "\n", encoding="utf-8")
    seconds = time.perf_counter() - t_start
    import pandas as pd

    cells = pd.read_parquet(out / "cells.parquet", columns=["source", "label"])
    device_name = torch.cuda.get_device_name(torch.device(dev)) if dev.startswith("cuda") else "cpu"
    record = {
        "model": {
            "spec": str(model),
            "path": str(model_folder),
            "architecture": meta.get("architecture"),
            "weights_sha256": meta.get("weights_sha256"),
            "input_size": meta.get("input_size"),
            "random_init": bool(meta.get("random_init", False)),
        },
        "data": data,
        "data_kind": res.kind,
        "fingerprint": fp,
        "order": ORDER,
        "options": {
            "batch_size": batch_size,
            "num_workers": num_workers,
            "device": dev,
            "device_name": device_name,
            "amp": str(amp_dtype).replace("torch.", "") if use_amp else None,
            "limit": limit,
            "seed": seed,
            "chunk_batches": chunk_batches,
        },
        "counts": {
            "cells": n,
            "dim": dim,
            "expected": expected,
            "unreadable_or_missing": None if expected is None else max(0, expected - n),
            "resumed_from_chunks": resumed,
            "embedded_this_run": embedded_now,
            "by_source": {str(k): int(v) for k, v in cells["source"].value_counts().sort_index().items()},
            "by_label": {
                str(k): int(v) for k, v in cells["label"].value_counts(dropna=False).sort_index().items()
            },
        },
        "timing": {
            "seconds": round(seconds, 2),
            "cells_per_second_this_run": round(embedded_now / seconds, 2) if seconds > 0 else None,
        },
        "hardware": _hardware(),
        "torch": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
    }
    done_json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(partial)
    # an index over older embeddings of this folder would now be stale
    for stale in ("index.faiss", "index.json"):
        (out / stale).unlink(missing_ok=True)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ssl-cyto embed``."""
    parser.add_argument(
        "--model",
        required=True,
        help="backbone folder, its model.json, a .ckpt, or a timm/tiny_cnn name (seeded random weights)",
    )
    parser.add_argument(
        "--data", required=True, help="shard folder/pattern, catalog.parquet, image folder or synth:<layout>"
    )
    parser.add_argument("--out", required=True, help="embedding folder to write (EMB_DIR)")
    parser.add_argument("--batch-size", type=int, default=64, help="cells per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading workers (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--limit", type=int, help="embed only the first N cells (loader order)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of random weights for a model name (default 0)"
    )
    parser.add_argument("--input-size", type=int, help="input size for a model given by name")
    parser.add_argument(
        "--chunk-batches", type=int, default=50, help="batches per resumable partial chunk (default 50)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace outputs/partial results of another model or data"
    )


def main(args: argparse.Namespace) -> int:
    """``ssl-cyto embed``: user errors print one line and return 2."""
    from ssl_cyto.data.datamodule import DataSpecError
    from ssl_cyto.models.backbones import BackboneError

    try:
        out = embed(
            args.model,
            args.data,
            args.out,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=args.device,
            limit=args.limit,
            seed=args.seed,
            input_size=args.input_size,
            chunk_batches=args.chunk_batches,
            overwrite=args.overwrite,
        )
    except (EmbedError, BackboneError, DataSpecError, FileNotFoundError) as exc:
        print(f"ssl-cyto embed: error: {exc}", file=sys.stderr)
        return 2
    info = json.loads((out / "embed.json").read_text(encoding="utf-8"))
    c = info["counts"]
    print(
        f"wrote {out}: {c['cells']} cells x {c['dim']} dims ({c['embedded_this_run']} embedded now, "
        f"{c['resumed_from_chunks']} resumed) in {info['timing']['seconds']:.1f} s"
    )
    return 0
