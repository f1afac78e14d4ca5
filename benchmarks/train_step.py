"""Training throughput of our SimCLR / DINO LightningModules against lightly's own example loops.

The reference loops follow the structure of lightly's plain-PyTorch examples
(``examples/pytorch/simclr.py`` and ``examples/pytorch/dino.py``): the same model classes, heads,
losses, optimiser and per-step calls, changed only in the data (one in-memory batch of random views,
identical for both sides) and the backbone (the same timm model for both sides). Our side runs
through a full ``pl.Trainer`` (hooks, logging, schedules included). Rounds alternate between the two
sides and the median step time is reported, so a noisy shared machine hits both alike.

Usage::

    python benchmarks/train_step.py                       # CPU: ResNet-18, 64 px, batch 64
    python benchmarks/train_step.py --gpu                 # + CUDA: ResNet-50 and ViT-S/16 at 224 px
    python benchmarks/train_step.py --out results/benchmarks/train_step

Figure of merit: ``ratio = ours images/s / lightly images/s`` (1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# ---- lightly's example models (examples/pytorch/simclr.py, dino.py), backbone swapped -------------
class ExampleSimCLR(nn.Module):
    def __init__(self, backbone: nn.Module, dim: int) -> None:
        from lightly.models.modules import SimCLRProjectionHead

        super().__init__()
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(dim, 512, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x).flatten(start_dim=1)
        return self.projection_head(x)


class ExampleDINO(nn.Module):
    def __init__(self, backbone: nn.Module, input_dim: int) -> None:
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        super().__init__()
        self.student_backbone = backbone
        self.student_head = DINOProjectionHead(input_dim, 512, 64, 2048, freeze_last_layer=1)
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = DINOProjectionHead(input_dim, 512, 64, 2048)
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.student_backbone(x).flatten(start_dim=1)
        return self.student_head(y)

    def forward_teacher(self, x: torch.Tensor) -> torch.Tensor:
        y = self.teacher_backbone(x).flatten(start_dim=1)
        return self.teacher_head(y)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def lightly_simclr_steps(
    backbone_name: str, size: int, views: list[torch.Tensor], steps: int, device
) -> list[float]:
    """lightly's SimCLR example loop on a fixed batch; returns per-step seconds."""
    from lightly.loss import NTXentLoss

    from ssl_cyto.models.factory import build_backbone

    backbone, dim = build_backbone(backbone_name, **_bb_kwargs(backbone_name, size))
    model = ExampleSimCLR(backbone, dim).to(device)
    criterion = NTXentLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        x0, x1 = views[0].to(device), views[1].to(device)
        z0 = model(x0)
        z1 = model(x1)
        loss = criterion(z0, z1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def lightly_dino_steps(
    backbone_name: str, size: int, views: list[torch.Tensor], steps: int, device
) -> list[float]:
    """lightly's DINO example loop (momentum schedule, last-layer freeze) on a fixed batch."""
    from lightly.loss import DINOLoss
    from lightly.models.utils import update_momentum
    from lightly.utils.scheduler import cosine_schedule

    from ssl_cyto.models.factory import build_backbone

    backbone, dim = build_backbone(backbone_name, **_bb_kwargs(backbone_name, size))
    model = ExampleDINO(backbone, dim).to(device)
    criterion = DINOLoss(output_dim=2048, warmup_teacher_temp_epochs=5).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06)
    epoch, epochs = 0, 10
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        momentum_val = cosine_schedule(epoch, epochs, 0.996, 1)
        update_momentum(model.student_backbone, model.teacher_backbone, m=momentum_val)
        update_momentum(model.student_head, model.teacher_head, m=momentum_val)
        vs = [v.to(device) for v in views]
        global_views = vs[:2]
        teacher_out = [model.forward_teacher(v) for v in global_views]
        student_out = [model.forward(v) for v in vs]
        loss = criterion(teacher_out, student_out, epoch=epoch)
        loss.backward()
        model.student_head.cancel_last_layer_gradients(current_epoch=epoch)
        optimizer.step()
        optimizer.zero_grad()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


# ---- our tasks through a real Trainer ------------------------------------------------------------
def _bb_kwargs(name: str, size: int) -> dict[str, Any]:
    return {"img_size": size} if name.startswith("vit") else {}


class _FixedBatch(torch.utils.data.IterableDataset):
    def __init__(self, views: list[torch.Tensor], n: int) -> None:
        self.views, self.n = views, n

    def __iter__(self):
        for _ in range(self.n):
            yield self.views

    def __len__(self) -> int:
        return self.n


class _StepTimer:
    def __init__(self, device: torch.device) -> None:
        import pytorch_lightning as pl

        timer = self

        class CB(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                _sync(device)
                timer._t0 = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                _sync(device)
                timer.times.append(time.perf_counter() - timer._t0)

        self.times: list[float] = []
        self._t0 = 0.0
        self.callback = CB()


def ours_steps(
    method: str, backbone_name: str, size: int, views: list[torch.Tensor], steps: int, device
) -> list[float]:
    """Our task's training steps in a ``pl.Trainer`` (batch already in memory); per-step seconds.

    The timed span runs from ``on_train_batch_start`` to ``on_train_batch_end`` and so includes the
    forward/backward, optimiser step, schedules, EMA update and logging; the batch transfer to the
    device happens just before it (as in the example loop, where it is timed, a few ms on GPU)."""
    import pytorch_lightning as pl

    from ssl_cyto.tasks import DINO, SimCLR

    common = {"backbone": backbone_name, "input_size": size, "warmup_steps": 0}
    if method == "simclr":
        task: pl.LightningModule = SimCLR(projection_hidden_dim=512, projection_dim=128, **common)
    else:
        n_local = len(views) - 2
        task = DINO(
            n_local_crops=n_local,
            local_size=int(views[-1].shape[-1]) if n_local else None,
            head_hidden_dim=512,
            head_bottleneck_dim=64,
            head_output_dim=2048,
            **common,
        )
    timer = _StepTimer(device)
    loader = torch.utils.data.DataLoader(_FixedBatch(views, steps), batch_size=None)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer.callback],
    )
    trainer.fit(task, loader)
    return timer.times


# ---- driver --------------------------------------------------------------------------------------
def make_views(method: str, batch: int, size: int, n_local: int, local: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    vs = [torch.randn(batch, 3, size, size, generator=g) for _ in range(2)]
    if method == "dino":
        vs += [torch.randn(batch, 3, local, local, generator=g) for _ in range(n_local)]
    return vs


def bench(
    method: str,
    backbone: str,
    size: int,
    batch: int,
    n_local: int,
    local: int,
    device,
    warmup: int,
    steps: int,
    rounds: int,
) -> dict[str, Any]:
    views = make_views(method, batch, size, n_local, local)
    ref = lightly_simclr_steps if method == "simclr" else lightly_dino_steps
    ours_t: list[float] = []
    ref_t: list[float] = []
    peak: dict[str, float] = {}
    for _ in range(rounds):
        for side in ("ours", "lightly"):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            torch.manual_seed(0)
            if side == "ours":
                t = ours_steps(method, backbone, size, views, warmup + steps, device)
                ours_t += t[warmup:]
            else:
                t = ref(backbone, size, views, warmup + steps, device)
                ref_t += t[warmup:]
            if device.type == "cuda":
                peak[side] = max(peak.get(side, 0.0), torch.cuda.max_memory_allocated() / 2**30)
            print(
                f"  {method} {backbone} {side}: median step {statistics.median(t[warmup:]):.3f} s",
                file=sys.stderr,
            )
    o, r = statistics.median(ours_t), statistics.median(ref_t)
    row = {
        "method": method,
        "backbone": backbone,
        "device": device.type,
        "input_size": size,
        "batch": batch,
        "views": f"2x{size}" + (f" + {n_local}x{local}" if method == "dino" and n_local else ""),
        "timed_steps_per_side": len(ours_t),
        "ours_step_s": round(o, 4),
        "lightly_step_s": round(r, 4),
        "ours_img_s": round(batch / o, 1),
        "lightly_img_s": round(batch / r, 1),
        "ratio": round(r / o, 3),
        "ours_step_range_s": [round(min(ours_t), 3), round(max(ours_t), 3)],
        "lightly_step_range_s": [round(min(ref_t), 3), round(max(ref_t), 3)],
    }
    if peak:
        row["ours_peak_gib"] = round(peak["ours"], 2)
        row["lightly_peak_gib"] = round(peak["lightly"], 2)
    return row


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu_count"] = os.cpu_count()
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    if hasattr(os, "getloadavg"):
        info["load_avg_1m_at_start"] = round(os.getloadavg()[0], 2)
    return info


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("torch", "torchvision", "timm", "lightly", "pytorch-lightning"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_report(
    rows: list[dict[str, Any]], out: Path, command: str, hw: dict, vers: dict, seconds: float
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": command, "hardware": hw, "versions": vers, "wall_s": round(seconds, 1), "results": rows}
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    cols = [
        "method",
        "backbone",
        "device",
        "input_size",
        "batch",
        "views",
        "ours_img_s",
        "lightly_img_s",
        "ratio",
        "ours_step_range_s",
        "lightly_step_range_s",
    ]
    if any("ours_peak_gib" in r for r in rows):
        cols += ["ours_peak_gib", "lightly_peak_gib"]
    lines = [
        "# Train-step throughput: ssl_cyto tasks vs lightly's example loops",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  ",
        f"Hardware: {hw.get('cpu', '?')}, {hw.get('cpu_count')} CPUs visible, torch threads {hw.get('torch_threads')}"
        + (f", GPU {hw['gpu']}" if "gpu" in hw else ", no GPU")
        + f", 1-min load average at start {hw.get('load_avg_1m_at_start', '?')}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + "  ",
        f"Wall time: {seconds:.0f} s",
        "",
        "images/s = samples (not views) per second of training; ratio = ours / lightly (1.0 = same speed);",
        "step ranges are the fastest and slowest timed steps in seconds: on a shared machine (see the load",
        "average) a ratio is only meaningful where the ranges do not swamp it.",
        "Median over alternating rounds of timed steps after warm-up; both sides use the same in-memory",
        "batch, views and timm backbone. Ours runs inside `pl.Trainer` (LR/WD/momentum schedules, logging);",
        "lightly's loop is its plain-PyTorch example (SGD, no schedules beyond its momentum schedule).",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    lines += [
        "",
        "Differences that affect speed, by design: our SimCLR forwards both views as one batch",
        "(`concat_views=True`, shared BatchNorm statistics) where the example makes two forwards; our DINO",
        "forwards all global views as one batch and all local views as one batch (DINO's multi-crop",
        "wrapper), where the example makes one forward per view. Our optimiser is AdamW (both tasks)",
        "vs the example's SGD.",
    ]
    if not any(r["device"] == "cuda" for r in rows):
        lines += [
            "",
            "GPU rows (ResNet-50 and ViT-S/16 at 224 px, with peak memory) need CUDA; not run here.",
        ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/benchmarks/train_step", help="report path without suffix")
    p.add_argument(
        "--gpu", action="store_true", help="also run the CUDA configurations (if CUDA is available)"
    )
    p.add_argument("--cpu-batch", type=int, default=64)
    p.add_argument("--cpu-size", type=int, default=64)
    p.add_argument("--gpu-batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of every round")
    p.add_argument("--steps", type=int, default=3, help="timed steps per round and side")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    command = "python benchmarks/train_step.py " + " ".join(argv if argv is not None else sys.argv[1:])
    hw, vers = hardware(), versions()
    t0 = time.perf_counter()
    cpu = torch.device("cpu")
    rows = []
    s = args.cpu_size
    for method in ("simclr", "dino"):
        rows.append(
            bench(method, "resnet18", s, args.cpu_batch, 4, s // 2, cpu, args.warmup, args.steps, args.rounds)
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    if args.gpu and torch.cuda.is_available():
        gpu = torch.device("cuda")
        for backbone in ("resnet50", "vit_small_patch16_224"):
            for method in ("simclr", "dino"):
                rows.append(bench(method, backbone, 224, args.gpu_batch, 6, 96, gpu, 3, 10, args.rounds))
                print(json.dumps(rows[-1]), file=sys.stderr)
    write_report(rows, Path(args.out), command.strip(), hw, vers, time.perf_counter() - t0)
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
