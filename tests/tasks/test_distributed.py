"""Two real processes (gloo, CPU): the gathered NT-Xent loss, the DINO centre and DINOv2's
Sinkhorn-Knopp teacher targets under DDP equal the single-process values on the concatenated batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

WORLD = 2
B = 8  # global batch; each rank holds B // WORLD
TINY_DINO = {
    "backbone": "tiny_cnn",
    "backbone_kwargs": {"width": 4, "depth": 2},
    "input_size": 16,
    "n_local_crops": 2,
    "head_hidden_dim": 16,
    "head_bottleneck_dim": 8,
    "head_output_dim": 32,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _data() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(B, 6, generator=g), torch.randn(B, 6, generator=g)
    views = [torch.randn(B, 3, 16, 16, generator=g) for _ in range(2)]
    views += [torch.randn(B, 3, 8, 8, generator=g) for _ in range(2)]
    return z0, z1, views


def _sk_logits() -> torch.Tensor:
    return torch.randn(B, 12, generator=torch.Generator().manual_seed(3)) * 0.3


def _dino():
    from ssl_cyto.tasks.dino import DINO

    torch.manual_seed(0)
    task = DINO(**TINY_DINO)
    # eval mode: BatchNorm uses its running statistics, so a sample's output does not depend on
    # which rank's half it sits in (CPU has no SyncBatchNorm) and the centre alone is compared.
    return task.eval()


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from lightly.loss import NTXentLoss

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        z0, z1, views = _data()
        half = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
        loss = NTXentLoss(temperature=0.2, gather_distributed=True)(z0[half], z1[half])
        task = _dino()
        centre0 = task.criterion.center.clone()
        dino_loss = task.compute_loss([v[half] for v in views], teacher_temp=0.04)
        from ssl_cyto.tasks.sinkhorn_loss import sinkhorn_knopp

        sk = sinkhorn_knopp(_sk_logits()[half], 0.05)
        torch.save(
            {
                "ntxent": loss.detach(),
                "centre0": centre0,
                "centre": task.criterion.center.clone(),
                "dino": dino_loss,
                "sinkhorn": sk,
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def _ntxent_rows(z0: np.ndarray, z1: np.ndarray, t: float) -> np.ndarray:
    z = np.concatenate([z0, z1]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n, sim = len(z0), z @ z.T / t
    rows = []
    for i in range(2 * n):
        others = [k for k in range(2 * n) if k != i]
        rows.append(-sim[i, (i + n) % (2 * n)] + np.log(np.exp(sim[i, others]).sum()))
    return np.array(rows)


@pytest.mark.distributed
def test_two_processes_match_single_process(tmp_path):
    import torch.multiprocessing as mp
    from lightly.loss import NTXentLoss

    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    # (a) NT-Xent with negatives gathered from both ranks
    z0, z1, views = _data()
    single = float(NTXentLoss(temperature=0.2)(z0, z1))
    ranks = [float(r["ntxent"]) for r in res]
    assert np.mean(ranks) == pytest.approx(single, rel=1e-5)
    rows = _ntxent_rows(z0.numpy(), z1.numpy(), 0.2)
    h = B // WORLD
    for r in range(WORLD):
        mine = np.r_[r * h : (r + 1) * h, B + r * h : B + (r + 1) * h]
        assert ranks[r] == pytest.approx(rows[mine].mean(), rel=1e-5)
    assert ranks[0] != pytest.approx(ranks[1])  # the halves differ: the check is not vacuous

    # (b) DINO centre: synchronised, equal to the single-process centre, and moved
    task = _dino()
    task.compute_loss(views, teacher_temp=0.04)
    torch.testing.assert_close(res[0]["centre"], res[1]["centre"], rtol=0, atol=1e-7)
    torch.testing.assert_close(res[0]["centre"], task.criterion.center, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(res[0]["centre"], res[0]["centre0"])

    # (c) Sinkhorn-Knopp targets: the sums run over the global batch, so each rank's rows are the
    # single-process rows of its half (and not the targets of its half alone)
    from ssl_cyto.tasks.sinkhorn_loss import sinkhorn_knopp

    full = sinkhorn_knopp(_sk_logits(), 0.05)
    torch.testing.assert_close(torch.cat([r["sinkhorn"] for r in res]), full, rtol=1e-5, atol=1e-7)
    alone = sinkhorn_knopp(_sk_logits()[: B // WORLD], 0.05)
    assert not torch.allclose(alone, full[: B // WORLD], atol=1e-4)
