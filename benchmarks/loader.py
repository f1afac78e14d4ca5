"""Loader throughput: WebDataset shards (CellDataModule) vs a torchvision ImageFolder, and the packer.

Both loaders read the same images (default: the real PBC subset, 8 classes x 600 JPEGs) with the same
SimCLR-like two-view augmentation (RandomResizedCrop to ``--size`` px, flip, colour jitter, grey-scale,
normalise) for 0, 1 and 2 DataLoader workers, in rounds that alternate the two loaders so a noisy shared
machine hits both alike. The shard side is the real training path: ``CellDataModule.train_dataloader()``
on a shard folder (resampled shard stream, shuffle buffer, fixed batches per epoch). The folder side is
``torchvision.datasets.ImageFolder`` + ``DataLoader(shuffle=True)``.

It also measures the packer (``ssl_cyto.data.shards.pack``, images/s with ``--pack-workers``), the
per-cell cost of each loader stage (raw read, decode, augmentation) and the bytes per cell of a
default pack of PBC and of the generated AML-LMU / BM-MLL layouts, and extrapolates the shard count
and size for the two real datasets (18,365 + 171,374 cells).

Usage::

    python benchmarks/loader.py                          # writes results/benchmarks/loader.md + .json
    python benchmarks/loader.py --data /path/to/imagefolder --batches 40 --reps 3

Figure of merit: ``ratio = shard images/s / folder images/s`` (steady state, best of the rounds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "pbc_subset"
REAL_COUNTS = {"aml-lmu": 18_365, "bm-mll": 171_374}  # Matek et al. 2019 (AML-LMU), 2021 (BM-MLL)


class TwoViews:
    """SimCLR-like augmentation (Chen et al., ICML 2020) at a small size: PIL -> [view, view]."""

    def __init__(self, size: int) -> None:
        from torchvision import transforms as T

        self.t = T.Compose(
            [
                T.RandomResizedCrop(size, scale=(0.2, 1.0)),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.ToTensor(),
                T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
            ]
        )

    def __call__(self, img: Any) -> list[Any]:
        return [self.t(img), self.t(img)]


class FolderTwoViews(TwoViews):
    """Same transform for ImageFolder (which hands over ``PIL.Image.open(path).convert('RGB')``)."""


def timed_batches(loader: Any, n_batches: int, batch_size: int) -> dict:
    """Iterate ``n_batches``; time to the first batch and steady-state images/s after it."""
    t0 = time.perf_counter()
    t_first = None
    n = 0
    for _batch in loader:
        n += 1
        if t_first is None:
            t_first = time.perf_counter() - t0
        if n >= n_batches:
            break
    total = time.perf_counter() - t0
    assert t_first is not None and n == n_batches, f"loader gave {n} of {n_batches} batches"
    steady = (n_batches - 1) * batch_size / max(total - t_first, 1e-9)
    return {
        "batches": n,
        "cells": n * batch_size,
        "seconds": round(total, 3),
        "first_batch_s": round(t_first, 3),
        "images_per_s": round(n * batch_size / total, 1),
        "steady_images_per_s": round(steady, 1),
    }


def shard_loader(shard_dir: Path, workers: int, batch_size: int, n_batches: int, size: int) -> Any:
    from ssl_cyto.data.datamodule import CellDataModule

    dm = CellDataModule(
        str(shard_dir), batch_size=batch_size, num_workers=workers, batches_per_epoch=n_batches, val_size=0
    )
    dm.train_transform = TwoViews(size)
    return dm.train_dataloader()


def folder_loader(root: Path, workers: int, batch_size: int, size: int) -> Any:
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(root), transform=FolderTwoViews(size))
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)


def stage_costs(shard_dir: Path, root: Path, size: int, n: int = 300, rounds: int = 3) -> dict:
    """Per-cell milliseconds of each stage, single process: raw read (shards / files), decode, augment.

    The stages run in ``rounds`` interleaved rounds after a warm-up; the minimum per stage is kept
    (the least disturbed round on a shared machine).
    """
    import webdataset as wds
    from PIL import Image

    from ssl_cyto.data.images import open_rgb
    from ssl_cyto.data.loading import decode_rgb

    urls = sorted(str(p) for p in shard_dir.glob("cells-*.tar"))
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    aug = TwoViews(size)

    def shard_read() -> list[bytes]:
        payloads = []
        for sample in wds.tarfile_samples({"url": u} for u in urls):
            payloads.append(sample["jpg"] if "jpg" in sample else sample["png"])
            if len(payloads) == n:
                break
        return payloads

    payloads = shard_read()
    imgs = [decode_rgb(b, name="bench") for b in payloads]

    def file_read() -> None:
        for p in files:
            p.read_bytes()

    def decode_loader() -> None:
        for b in payloads:
            decode_rgb(b, name="bench")

    def decode_open_rgb() -> None:
        for b in payloads:
            open_rgb(b)

    def decode_imagefolder() -> None:  # torchvision's default_loader
        for p in files:
            with open(p, "rb") as fh:
                Image.open(fh).convert("RGB")

    def augment() -> None:
        for img in imgs:
            aug(img)

    stages = {
        "shard_read_ms": shard_read,
        "file_read_ms": file_read,
        "decode_loader_ms": decode_loader,
        "decode_open_rgb_ms": decode_open_rgb,
        "decode_imagefolder_ms": decode_imagefolder,
        "augment_two_views_ms": augment,
    }
    best = {k: float("inf") for k in stages}
    for _ in range(rounds):
        for name, fn in stages.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], (time.perf_counter() - t) / n)
    return {"cells": n, "rounds": rounds} | {k: round(v * 1e3, 3) for k, v in best.items()}


def synth_bytes_per_cell(layout: str, per_class: int, work: Path) -> dict:
    from ssl_cyto.data.packing import pack
    from ssl_cyto.data.scanning import scan
    from ssl_cyto.data.synth import synthesize

    root = synthesize(work / f"synth-{layout}", layout=layout, per_class=per_class, seed=0)
    cat = scan([(layout, str(root))])
    index = pack(cat, work / f"shards-{layout}", progress=False)
    return {
        "data": f"generated {layout} layout ({len(cat)} cells, ssl_cyto.data.synth, seed 0)",
        "cells": index["total_cells"],
        "bytes_per_cell": index["bytes_per_cell"],
        "extensions": index["extensions"],
    }


def versions() -> dict:
    import PIL
    import torch
    import torchvision
    import webdataset

    import ssl_cyto

    commit = "unknown"
    try:
        import subprocess

        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "webdataset": webdataset.__version__,
        "pillow": PIL.__version__,
        "ssl_cyto": ssl_cyto.__version__,
        "git_commit": commit,
    }


def render(result: dict, md_path: Path) -> Path:
    """Write the Markdown report from a result dict (as saved in the .json)."""
    from ssl_cyto.evaluation.report import markdown_table, write_report

    summary, runs = result["summary"], result["runs"]
    stages, packer = result["stages_ms_per_cell"], result["packer"]
    sizes, estimate = result["bytes_per_cell"], result["estimate_real_190k"]
    settings = result["settings"]
    n_cells = packer["cells"]
    two = next((r for r in summary if r["workers"] == 2), summary[-1])
    verdict = (
        f"With {two['workers']} workers the shard loader runs at {two['ratio_best']:.2f}x the ImageFolder "
        f"loader (best of {settings['reps']} rounds; median ratio {two['ratio_median']:.2f})."
    )
    decode_aug = stages["decode_loader_ms"] + stages["augment_two_views_ms"]
    spreads = []
    for kind in ("shards", "folder"):
        vals = [
            r["steady_images_per_s"] for r in runs if r["loader"] == kind and r["workers"] == two["workers"]
        ]
        if len(vals) > 1:
            spreads.append((max(vals) - min(vals)) / max(vals))
    noise = ""
    if spreads:
        spread = max(spreads)
        noise = (
            f" Rounds of the same loader at {two['workers']} workers differ by up to {spread:.0%} (load average "
            f"{result['load_average_before'][0]} on {result['cpu_count']} cores: the machine is shared). "
            + (
                "The gap between the loaders is within that spread, so it is not a measurable difference "
                "on this machine."
                if abs(two["ratio_median"] - 1.0) <= spread
                else "The gap between the loaders is larger than that spread."
            )
        )
    explain = ""
    if two["ratio_best"] < 1.0:
        explain = (
            "\n\n**Why the shards are not faster here.** On this machine both loaders are bound by JPEG "
            f"decoding and augmentation ({stages['decode_loader_ms']:.2f} + "
            f"{stages['augment_two_views_ms']:.2f} ms per cell, single process), while reading the bytes "
            f"costs {stages['shard_read_ms']:.3f} ms per cell from a shard and {stages['file_read_ms']:.3f} ms "
            f"from a file: {n_cells:,} small files on a local disk sit in the page cache, so the per-file "
            "overhead that shards remove is tiny, and reading through Python's streaming tarfile costs "
            "more per cell than a cached `read()`. The shard path also parses each sample's json and "
            "holds a shuffle buffer (1,000 samples per worker, filled before the first batch). "
            "What would change it: data that is not in the page cache (network or object storage, "
            "190k files on a parallel file system), where one sequential read per 1,000 cells replaces "
            "1,000 opens; or moving augmentation to the GPU (`augment_on_device`), which leaves only "
            "decoding (where the shard loader skips a copy) on the CPU."
        )
    sections = [
        (
            "Result",
            verdict
            + noise
            + explain
            + f"\n\nPer-stage cost per cell (single process, {stages['cells']} cells, best of {stages['rounds']} rounds): raw read from shard "
            f"{stages['shard_read_ms']:.3f} ms, raw read from file {stages['file_read_ms']:.3f} ms, decode "
            f"(shard loader: `decode_rgb`) {stages['decode_loader_ms']:.2f} ms, decode "
            f"(`open_rgb`) {stages['decode_open_rgb_ms']:.2f} ms, decode (ImageFolder: `convert('RGB')`) "
            f"{stages['decode_imagefolder_ms']:.2f} ms, two-view augmentation {stages['augment_two_views_ms']:.2f} ms "
            f"(decode + augment {decode_aug:.2f} ms, i.e. at most {1000 / decode_aug:.0f} cells/s per core).",
        ),
        (
            "Loader throughput (steady-state images/s after the first batch; cells, not views)",
            markdown_table(summary, float_fmt=".1f")
            + "\n`first_batch_s` includes starting the workers and, for shards, filling the shuffle buffer.\n",
        ),
        (
            "All rounds",
            markdown_table(
                runs,
                [
                    "loader",
                    "workers",
                    "rep",
                    "batches",
                    "seconds",
                    "first_batch_s",
                    "images_per_s",
                    "steady_images_per_s",
                ],
                float_fmt=".2f",
            ),
        ),
        (
            "Packer",
            f"`pack()` of {packer['cells']} cells with {packer['workers']} workers (decode check of every image, "
            f"JPEG pass-through): {packer['seconds']} s, **{packer['images_per_s']} images/s**, "
            f"{packer['shards']} shard(s), {packer['bytes_per_cell']} bytes per cell, skipped {packer['skipped']}.",
        ),
        (
            "Bytes per cell (default pack: JPEG pass-through, other formats -> RGB PNG)",
            markdown_table(
                [{"set": k} | v for k, v in sizes.items()],
                ["set", "data", "cells", "bytes_per_cell", "extensions"],
                ".1f",
            )
            + f"\nExtrapolated to the real AML-LMU ({REAL_COUNTS['aml-lmu']:,}) + BM-MLL ({REAL_COUNTS['bm-mll']:,}) "
            f"cells at the default 1,000 cells per shard: **{estimate['shards']} shards, {estimate['total_gb']} GB, "
            f"~{estimate['mean_shard_mb']} MB per shard** (computed from the generated layouts' bytes per cell; real "
            "files compress differently, so treat it as an order of magnitude).\n",
        ),
        (
            "Settings and environment",
            f"Views: 2 x {settings['size']} px, batch {settings['batch_size']}, {settings['batches']} batches per measurement, "
            f"{settings['reps']} rounds alternating the loaders. Load average before/after: {result['load_average_before']} / "
            f"{result['load_average_after']} (the machine is shared). Versions: {result['versions']}. "
            f"Total benchmark time {result['seconds']} s.",
        ),
    ]
    write_report(
        md_path,
        "Loader benchmark: WebDataset shards vs ImageFolder",
        result["command"],
        f"{result['data']} ({n_cells} cells)",
        sections,
    )
    return md_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an ImageFolder (default: the PBC subset)")
    p.add_argument("--size", type=int, default=64, help="view size in px (default 64)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=25, help="batches per measurement (default 25)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--reps", type=int, default=2, help="rounds; each alternates the two loaders (default 2)")
    p.add_argument("--pack-workers", type=int, default=2)
    p.add_argument("--synth-per-class", type=int, default=8, help="generated cells per class for bytes/cell")
    p.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "loader")
    p.add_argument("--render-only", action="store_true", help="rewrite OUT.md from an existing OUT.json")
    args = p.parse_args(argv)
    if args.render_only:
        render(json.loads(args.out.with_suffix(".json").read_text()), args.out.with_suffix(".md"))
        return 0

    import torch

    from ssl_cyto.data.packing import pack
    from ssl_cyto.data.scanning import scan
    from ssl_cyto.formats.provenance import hardware_summary

    if not args.data.is_dir():
        print(f"{args.data}: not found (give --data an ImageFolder)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ssl_cyto_loader_bench_"))
    try:
        catalog = scan([("folder", str(args.data))])
        shard_dir = work / "shards"
        t = time.perf_counter()
        index = pack(catalog, shard_dir, workers=args.pack_workers, progress=False)
        pack_s = time.perf_counter() - t
        packer = {
            "cells": index["total_cells"],
            "workers": args.pack_workers,
            "seconds": round(pack_s, 2),
            "images_per_s": round(index["total_cells"] / pack_s, 1),
            "shards": index["n_shards"],
            "bytes_per_cell": index["bytes_per_cell"],
            "extensions": index["extensions"],
            "skipped": len(index["skipped"]),
        }
        print(f"packer: {packer}", file=sys.stderr)

        runs: list[dict] = []
        for rep in range(args.reps):
            for workers in args.workers:
                order = ("shards", "folder") if rep % 2 == 0 else ("folder", "shards")
                for kind in order:
                    torch.manual_seed(rep)
                    if kind == "shards":
                        loader = shard_loader(shard_dir, workers, args.batch_size, args.batches, args.size)
                    else:
                        loader = folder_loader(args.data, workers, args.batch_size, args.size)
                    res = timed_batches(loader, args.batches, args.batch_size)
                    del loader
                    runs.append({"loader": kind, "workers": workers, "rep": rep} | res)
                    print(f"{kind:6s} workers={workers} rep={rep}: {res}", file=sys.stderr)

        summary = []
        for workers in args.workers:
            row: dict[str, Any] = {"workers": workers}
            for kind in ("shards", "folder"):
                mine = [r for r in runs if r["loader"] == kind and r["workers"] == workers]
                row[f"{kind}_steady_best"] = max(r["steady_images_per_s"] for r in mine)
                row[f"{kind}_steady_median"] = statistics.median(r["steady_images_per_s"] for r in mine)
                row[f"{kind}_first_batch_s"] = statistics.median(r["first_batch_s"] for r in mine)
            row["ratio_best"] = round(row["shards_steady_best"] / row["folder_steady_best"], 3)
            row["ratio_median"] = round(row["shards_steady_median"] / row["folder_steady_median"], 3)
            summary.append(row)
        stages = stage_costs(shard_dir, args.data, args.size)
        print(f"stages: {stages}", file=sys.stderr)
        sizes = {
            args.data.name: {
                "data": f"{args.data} ({index['total_cells']} files as found)",
                "cells": index["total_cells"],
                "bytes_per_cell": index["bytes_per_cell"],
                "extensions": index["extensions"],
            }
        }
        for layout in ("aml-lmu", "bm-mll"):
            sizes[layout] = synth_bytes_per_cell(layout, args.synth_per_class, work)
        total_cells = sum(REAL_COUNTS.values())
        total_bytes = sum(REAL_COUNTS[s] * sizes[s]["bytes_per_cell"] for s in REAL_COUNTS)
        n_shards = math.ceil(total_cells / 1000)
        estimate = {
            "cells": total_cells,
            "per_source": REAL_COUNTS,
            "shard_size": 1000,
            "shards": n_shards,
            "total_gb": round(total_bytes / 1e9, 2),
            "mean_shard_mb": round(total_bytes / n_shards / 1e6, 1),
            "basis": "bytes per cell of default packs of the generated aml-lmu and bm-mll layouts",
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    elapsed = time.perf_counter() - started
    command = "python benchmarks/loader.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {
        "command": command.strip(),
        "data": str(args.data),
        "hardware": hardware_summary(),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "versions": versions(),
        "settings": {
            "size": args.size,
            "batch_size": args.batch_size,
            "batches": args.batches,
            "reps": args.reps,
            "shuffle_buffer": 1000,
        },
        "packer": packer,
        "runs": runs,
        "summary": summary,
        "stages_ms_per_cell": stages,
        "bytes_per_cell": sizes,
        "estimate_real_190k": estimate,
        "seconds": round(elapsed, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))

    render(result, args.out.with_suffix(".md"))
    print(f"wrote {args.out.with_suffix('.md')} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
