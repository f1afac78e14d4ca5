"""The DDP gradient of the real ``training_step`` (SimCLR and DINO, 2 processes, gloo, BatchNorm in eval
mode, fixed views) equals the single-process gradient on the concatenated batch within 1e-5 x max|g|;
with a gather that passes no gradients (the variant) it does not."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightly.utils import dist as lightly_dist
from torch import nn

from ssl_cyto.tasks.dino import DINO
from ssl_cyto.tasks.simclr import SimCLR
from tests.tasks.harness import DINO_TINY, TINY

WORLD, B = 2, 8


class Step(nn.Module):
    """The task's ``training_step`` as a module forward, so DDP wraps what Lightning runs."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, batch: list[torch.Tensor]) -> torch.Tensor:
        return self.task.training_step(batch, 0)


def _task(method: str) -> nn.Module:
    torch.manual_seed(0)
    task = SimCLR(**TINY) if method == "simclr" else DINO(**DINO_TINY)
    task.eval()  # BatchNorm on running statistics: a sample's output does not depend on its rank
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
    return task


def _views(method: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    out = [torch.randn(B, 3, 16, 16, generator=g) for _ in range(2)]
    return out + ([torch.randn(B, 3, 8, 8, generator=g) for _ in range(2)] if method == "dino" else [])


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


def _detached_gather(x: torch.Tensor) -> list[torch.Tensor]:
    out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.detach())
    return out


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        half = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
        res = {}
        for variant in ("good", "broken"):
            if variant == "broken":  # the variant: a gather that passes no gradients
                lightly_dist.gather = _detached_gather  # type: ignore[assignment]
            for method in ("simclr", "dino"):
                task = _task(method)
                ddp = nn.parallel.DistributedDataParallel(Step(task))
                ddp([v[half] for v in _views(method)]).backward()
                res[variant, method] = _grads(task)
        torch.save(res, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _single(method: str) -> dict[str, torch.Tensor]:
    task = _task(method)
    task.training_step(_views(method), 0).backward()
    return _grads(task)


def _worst(ddp: dict[str, torch.Tensor], single: dict[str, torch.Tensor]) -> float:
    """max |g_ddp - g_single| / max |g_single| over every parameter."""
    assert ddp.keys() == single.keys() and single
    scale = max(float(g.abs().max()) for g in single.values())
    return max(float((ddp[k] - single[k]).abs().max()) for k in single) / scale


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_gradient_equals_single_process_gradient(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    mp.spawn(_worker, args=(port, str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for method in ("simclr", "dino"):
        single = _single(method)
        for r in range(WORLD):
            assert _worst(ranks[r]["good", method], single) < 1e-5, method
        # without gradients through the gather, NT-Xent's negatives from the other rank send nothing
        # back and the DDP gradient is wrong (DINO has no gather: unaffected)
        broken = _worst(ranks[0]["broken", method], single)
        assert broken > 1e-3 if method == "simclr" else broken < 1e-5
