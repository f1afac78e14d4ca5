"""GPU check: the training path that CPU tests cannot reach, timed, in one command of <= 5 minutes.

Stages (each writes its figures to ``OUT/gpu.json`` and ``OUT/gpu.md`` as soon as it ends, so a run cut
short still leaves what it measured):

1. ``env``: torch, CUDA, the device, bf16 support, which optional packages import (faiss).
2. ``simclr_resnet50``: SimCLR, ResNet-50 at 224 px, bf16-mixed, channels_last, SyncBatchNorm
   conversion, on-device views (the loader's uint8 batch goes to the GPU, kornia makes the views there),
   ``--steps`` timed steps after ``--warmup``, with ``torch.compile`` off and then on (compiled once).
3. ``dino_vits16``: DINO, ViT-S/16, 2 x 224 global + 8 x 96 local views, the same way.
4. ``ddp``: one SimCLR step in 2 processes (NCCL, ``ddp_spawn``) where 2+ GPUs exist (skipped otherwise).
5. ``faiss``: FAISS-GPU flat inner-product build and search when faiss has GPU support (CPU FAISS in
   ``--dry-run``; skipped when faiss is absent).

Figures: images/s (every view of every cell), step time (median), peak GPU memory, and an MFU estimate:
training FLOPs (3 x the backbone's forward FLOPs per image, counted with
``torch.utils.flop_counter``, heads ignored) per second over the device's dense bf16 peak (known for
A100, H100, H200, L40S; otherwise not estimated).

Usage (on the GPU machine, from the repository root; no network needed)::

    python benchmarks/gpu_check.py                          # writes results/benchmarks/gpu.{json,md}
    python benchmarks/gpu_check.py --dry-run --out /tmp/gc  # CPU, tiny sizes, the same code path

Packages the machine lacks travel with the repository as wheels (64 MiB at most):
``bash benchmarks/gpu_wheels.sh`` here (into the git-ignored ``cache/gpu_wheels/``; it says what is not
included), then ``pip install --no-index --no-deps --find-links cache/gpu_wheels cache/gpu_wheels/*.whl
&& timeout 300 python benchmarks/gpu_check.py`` there (the machine has its own Python 3.12 and torch;
docs/training.md). The ``env`` stage lists what does not import.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Dense bf16 peak FLOP/s by device name fragment (vendor data sheets, SXM parts).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}
OPTIONAL = ("faiss", "kornia", "timm", "lightly", "webdataset", "pytorch_lightning")


class Report:
    """Figures of every stage, rewritten to ``gpu.json`` and ``gpu.md`` after each one."""

    def __init__(self, out: Path, command: str) -> None:
        self.out = out
        self.data: dict[str, Any] = {"command": command, "stages": {}}
        out.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, figures: dict[str, Any]) -> None:
        self.data["stages"][name] = figures
        (self.out / "gpu.json").write_text(json.dumps(self.data, indent=1, default=str))
        lines = ["# GPU check", "", f"Command: `{self.data['command']}`", ""]
        for stage, figs in self.data["stages"].items():
            lines += [f"## {stage}", "", "| figure | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in figs.items()]
            lines.append("")
        (self.out / "gpu.md").write_text("\n".join(lines))
        print(f"gpu_check: {name}: {json.dumps(figures, default=str)}", file=sys.stderr, flush=True)


def env_stage() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    figs: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "gpus": torch.cuda.device_count() if cuda else 0,
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
    }
    for name in OPTIONAL:
        try:
            mod = importlib.import_module(name)
            figs[name] = getattr(mod, "__version__", "yes")
        except Exception as exc:  # a package that does not import is a figure here, not a failure
            figs[name] = f"missing ({type(exc).__name__})"
    return figs


def forward_flops(backbone: Any, sizes: list[int], device: Any) -> float:
    """Forward FLOPs of one image at each size in ``sizes`` (summed), counted by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    total = 0.0
    backbone.eval()
    with torch.no_grad():
        for size in sizes:
            counter = FlopCounterMode(display=False)
            with counter:
                backbone(torch.zeros(1, 3, size, size, device=device))
            total += counter.get_total_flops()
    backbone.train()
    return total


def make_task(method: str, p: dict[str, Any], compiled: bool, backend: str) -> Any:
    from ssl_cyto.tasks import DINO, SimCLR

    common = {
        "backbone": p["backbone"],
        "backbone_kwargs": p.get("backbone_kwargs", {}),
        "input_size": p["size"],
        "warmup_steps": 0,
        "channels_last": p["channels_last"],
        "augment_on_device": True,
        "compile": compiled,
    }
    if method == "simclr":
        task: Any = SimCLR(projection_hidden_dim=p["hidden"], projection_dim=128, **common)
    else:
        task = DINO(n_local_crops=p["n_local"], local_size=p["local"], head_output_dim=p["heads"], **common)
    if compiled and backend != "inductor":  # the task compiles with the default backend; this one instead
        import torch

        object.__setattr__(task, "_compiled_backbone", torch.compile(task.backbone, backend=backend))
    return task


class _Batches(torch.utils.data.IterableDataset):
    """The loader of ``augment_on_device``: one pinned uint8 batch per step."""

    def __init__(self, batch: Any, n: int) -> None:
        super().__init__()
        self.batch, self.n = batch, n

    def __iter__(self) -> Any:
        for _ in range(self.n):
            yield [self.batch]

    def __len__(self) -> int:
        return self.n


def train_stage(method: str, p: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import pytorch_lightning as pl

    from ssl_cyto.training.console import quiet_lightning

    quiet_lightning()
    cuda = torch.cuda.is_available() and not args.dry_run
    device = torch.device("cuda" if cuda else "cpu")
    side = max(p["size"], p.get("local") or 0)
    batch = torch.randint(0, 256, (p["batch"], 3, side, side), dtype=torch.uint8)
    if cuda:
        batch = batch.pin_memory()
    images_per_step = p["batch"] * (2 + p.get("n_local", 0))
    figs: dict[str, Any] = {"batch": p["batch"], "views": 2 + p.get("n_local", 0), "size": p["size"]}
    for compiled in (False, True):
        times: list[float] = []

        class Timer(pl.Callback):
            def __init__(self, into: list[float]) -> None:
                self.into = into

            def on_train_batch_start(self, *a: Any) -> None:
                if cuda:
                    torch.cuda.synchronize()
                self.t0 = time.perf_counter()

            def on_train_batch_end(self, *a: Any) -> None:
                if cuda:
                    torch.cuda.synchronize()
                self.into.append(time.perf_counter() - self.t0)

        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        task = make_task(method, p, compiled, args.compile_backend)
        trainer = pl.Trainer(
            accelerator="gpu" if cuda else "cpu",
            devices=1,
            precision="bf16-mixed" if cuda else "32-true",
            max_steps=args.warmup + args.steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[Timer(times)],
        )
        t0 = time.perf_counter()
        trainer.fit(
            task, torch.utils.data.DataLoader(_Batches(batch, args.warmup + args.steps), batch_size=None)
        )
        tag = "compiled" if compiled else "eager"
        step = statistics.median(times[args.warmup :])
        figs[f"{tag}_step_s"] = round(step, 4)
        figs[f"{tag}_images_per_s"] = round(images_per_step / step, 1)
        figs[f"{tag}_wall_s"] = round(time.perf_counter() - t0, 1)
        if cuda:
            figs[f"{tag}_peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if not compiled:
            sizes = [p["size"]] * 2 + [p.get("local") or p["size"]] * p.get("n_local", 0)
            flops = 3 * forward_flops(task.backbone.to(device), sizes, device) * p["batch"]
            figs["train_gflop_per_step"] = float(f"{flops / 1e9:.4g}")
        peak = next((v for k, v in PEAK_BF16.items() if cuda and k in torch.cuda.get_device_name(0)), None)
        figs[f"{tag}_mfu"] = round(figs["train_gflop_per_step"] * 1e9 / step / peak, 3) if peak else "n/a"
    return figs


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    from ssl_cyto.tasks import SimCLR

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    task = SimCLR(backbone="resnet50", input_size=224).cuda()
    model = torch.nn.parallel.DistributedDataParallel(
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(task.backbone).cuda()
    )
    x = torch.randn(32, 3, 224, 224, device="cuda")
    t0 = time.perf_counter()
    model(x).float().pow(2).mean().backward()
    torch.cuda.synchronize()
    emb = torch.zeros(4, device="cuda") + rank
    gathered = [torch.zeros(4, device="cuda") for _ in range(world)]
    dist.all_gather(gathered, emb)
    if rank == 0:
        Path(out).write_text(
            json.dumps({"step_s": time.perf_counter() - t0, "gathered": [float(g[0]) for g in gathered]})
        )
    dist.destroy_process_group()


def ddp_stage(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.multiprocessing as mp

    if args.dry_run or torch.cuda.device_count() < 2:
        return {"skipped": f"{torch.cuda.device_count()} GPU(s); needs 2"}
    out = Path(tempfile.mkdtemp()) / "ddp.json"
    mp.spawn(_ddp_worker, args=(2, 29517, str(out)), nprocs=2, join=True)
    return json.loads(out.read_text())


def faiss_stage(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import faiss
    except ImportError:
        return {"skipped": "faiss not installed"}
    import numpy as np

    n, d, q = (2000, 32, 100) if args.dry_run else (1_000_000, 384, 10_000)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    faiss.normalize_L2(x)
    index: Any = faiss.IndexFlatIP(d)
    gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0 and not args.dry_run
    if gpu:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    t0 = time.perf_counter()
    index.add(x)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, ids = index.search(x[:q], 10)
    search = time.perf_counter() - t0
    return {
        "gpu": gpu,
        "vectors": n,
        "dim": d,
        "build_s": round(build, 3),
        "queries_per_s": round(q / search, 1),
        "self_hit_rate": float((ids[:, 0] == np.arange(q)).mean()),
    }


def params(dry_run: bool) -> dict[str, dict[str, Any]]:
    """Model sizes: the real ones, or tiny ones (tiny_cnn, small images) for ``--dry-run``."""
    if dry_run:
        tiny = {"backbone": "tiny_cnn", "backbone_kwargs": {"width": 4, "depth": 2}, "channels_last": True}
        return {
            "simclr": {**tiny, "size": 32, "batch": 4, "hidden": 32},
            "dino": {**tiny, "size": 32, "local": 16, "n_local": 2, "batch": 4, "heads": 64},
        }
    return {
        "simclr": {"backbone": "resnet50", "size": 224, "batch": 128, "hidden": 2048, "channels_last": True},
        "dino": {
            "backbone": "vit_small_patch16_224",
            "size": 224,
            "local": 96,
            "n_local": 8,
            "batch": 64,
            "heads": 65536,
            "channels_last": False,
        },
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default=None, help="folder of gpu.json / gpu.md (default results/benchmarks)"
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, same code path (tests)")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per model and mode (default 20; dry 2)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; dry 1)")
    parser.add_argument(
        "--compile-backend", default=None, help="torch.compile backend (default inductor; dry eager)"
    )
    args = parser.parse_args(argv)
    args.steps = args.steps or (2 if args.dry_run else 20)
    args.warmup = args.warmup or (1 if args.dry_run else 5)
    args.compile_backend = args.compile_backend or ("eager" if args.dry_run else "inductor")
    default_out = (
        Path(tempfile.gettempdir()) / "gpu_check_dry" if args.dry_run else Path("results/benchmarks")
    )
    out = Path(args.out) if args.out else default_out
    report = Report(
        out, "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    report.add("env", env_stage())
    p = params(args.dry_run)
    report.add("simclr_resnet50", train_stage("simclr", p["simclr"], args))
    report.add("dino_vits16", train_stage("dino", p["dino"], args))
    report.add("ddp", ddp_stage(args))
    report.add("faiss", faiss_stage(args))
    return out


if __name__ == "__main__":
    main()
