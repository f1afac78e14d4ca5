"""The DDP gradient of DINOv2's real ``training_step`` (2 processes, gloo) equals the single-process
gradient on the concatenated batch with KoLeo computed per half-batch (DINOv2 computes it per rank).

Each rank holds half of every view and the matching half of fixed block masks; rank 0 holds more
masked patches than rank 1, so the iBOT Sinkhorn-Knopp targets must count the masked patches of
both ranks (an all-reduced count, not rows x world size)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ssl_cyto.tasks.dinov2 import DINOv2
from ssl_cyto.tasks.koleo_loss import koleo_per_crop
from tests.tasks.harness import DINOV2_TINY

WORLD, B = 2, 8


class Step(nn.Module):
    """The task's ``training_step`` as a module forward, so DDP wraps what Lightning runs."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, batch: list[torch.Tensor]) -> torch.Tensor:
        return self.task.training_step(batch, 0)


def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed masks of the two global views (B images each, 4 x 4 patches)."""
    m0 = torch.zeros(B, 4, 4, dtype=torch.bool)
    m1 = torch.zeros(B, 4, 4, dtype=torch.bool)
    m0[0, :3, :3] = True  # rank 0: 9 + 4 + 2 masked patches
    m0[2, 1:3, 1:3] = True
    m1[1, 0, :2] = True
    m0[5, 2:, 2:] = True  # rank 1: 4 + 3 masked patches
    m1[6, 3, 1:] = True
    return m0, m1


def _task(rows: slice) -> DINOv2:
    torch.manual_seed(0)
    task = DINOv2(**{**DINOV2_TINY, "koleo_weight": 0.3})
    task.trainer = SimpleNamespace(  # type: ignore[assignment]
        global_step=0,
        num_training_batches=4,
        accumulate_grad_batches=1,
        max_epochs=1,
        estimated_stepping_batches=4,
        current_epoch=0,
        world_size=WORLD,
    )
    task.log = lambda *a, **k: None  # type: ignore[method-assign]
    m0, m1 = _masks()
    task.block_masks = lambda n, grid, device: torch.cat([m0[rows], m1[rows]])  # type: ignore[method-assign]
    return task


def _views() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(B, 3, 16, 16, generator=g) for _ in range(2)] + [
        torch.randn(B, 3, 8, 8, generator=g) for _ in range(2)
    ]


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        half = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
        task = _task(half)
        ddp = nn.parallel.DistributedDataParallel(Step(task))
        ddp([v[half] for v in _views()]).backward()
        torch.save(_grads(task), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _single(koleo_halves: bool) -> dict[str, torch.Tensor]:
    task = _task(slice(None))
    if koleo_halves:  # DDP averages the ranks' gradients: KoLeo of each crop, averaged over the halves

        def per_half(cls: torch.Tensor, n_crops: int) -> torch.Tensor:
            crops = cls.chunk(n_crops)
            halves = [torch.cat([c.chunk(WORLD)[r] for c in crops]) for r in range(WORLD)]
            return torch.stack([koleo_per_crop(task.koleo, h, n_crops) for h in halves]).mean()

        task.koleo_term = per_half  # type: ignore[method-assign]
    task.training_step(_views(), 0).backward()
    return _grads(task)


def _worst(ddp: dict[str, torch.Tensor], single: dict[str, torch.Tensor]) -> float:
    """max |g_ddp - g_single| / max |g_single| over every parameter."""
    assert ddp.keys() == single.keys() and single
    scale = max(float(g.abs().max()) for g in single.values())
    return max(float((ddp[k] - single[k]).abs().max()) for k in single) / scale


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_gradient_equals_single_process_gradient_with_koleo_per_half(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    mp.spawn(_worker, args=(port, str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    single = _single(koleo_halves=True)
    assert "mask_token" in single and any(k.startswith("student_ibot_head") for k in single)
    for r in range(WORLD):
        assert _worst(ranks[r], single) < 1e-5
    # KoLeo over the whole batch (neighbours from the other rank's half) is a different gradient
    whole = _single(koleo_halves=False)
    backbone = [k for k in whole if k.startswith("backbone.blocks")]
    assert max(float((ranks[0][k] - whole[k]).abs().max() / whole[k].abs().max()) for k in backbone) > 1e-3
