"""KoLeo (Sablayrolles et al. 2019) against its formula, per crop as DINOv2 sums it, and in DINO."""

from __future__ import annotations

import torch

from ssl_cyto.tasks.dino import DINO
from ssl_cyto.tasks.koleo_loss import KoLeoLoss32, koleo_per_crop
from tests.tasks.harness import DINO_TINY, views


def koleo_formula(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """-1/n sum_i log(min_{j != i} ||x_i - x_j|| + eps) of the L2-normalised rows."""
    z = x / x.norm(dim=1, keepdim=True)
    d = torch.cdist(z.double(), z.double()) + torch.diag(
        torch.full((len(z),), float("inf"), dtype=torch.float64)
    )
    return -torch.log(d.min(dim=1).values + eps).mean().float()


def test_koleo_matches_its_formula_and_spreads() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 5, generator=g)
    torch.testing.assert_close(KoLeoLoss32()(x), koleo_formula(x), rtol=1e-4, atol=1e-5)
    close = x.clone()
    close[1] = close[0] + 1e-3  # two near-duplicates: KoLeo rises
    assert float(KoLeoLoss32()(close)) > float(KoLeoLoss32()(x)) + 0.5


def test_per_crop_never_pairs_the_two_crops_of_a_cell() -> None:
    g = torch.Generator().manual_seed(1)
    crop0 = torch.randn(6, 4, generator=g)
    both = torch.cat([crop0, crop0 + 1e-4 * torch.randn(6, 4, generator=g)])  # crop 1 ~ crop 0
    per_crop = koleo_per_crop(KoLeoLoss32(), both, 2)
    torch.testing.assert_close(
        per_crop, koleo_formula(both[:6]) + koleo_formula(both[6:]), rtol=1e-4, atol=1e-5
    )
    assert float(per_crop) < float(KoLeoLoss32()(both))  # over the stacked batch each cell's twin is nearest


def test_dino_koleo_weight_adds_koleo_and_defaults_to_off() -> None:
    batch = views(2, 2)
    torch.manual_seed(0)
    off = DINO(**DINO_TINY)
    assert off.hparams["koleo_weight"] == 0.0
    torch.manual_seed(0)
    on = DINO(**DINO_TINY, koleo_weight=0.5)
    base = off.compute_loss(batch, teacher_temp=0.04)
    total = on.compute_loss(batch, teacher_temp=0.04)
    feats = on(torch.cat(batch[:2]))
    torch.testing.assert_close(
        total, base + 0.5 * koleo_per_crop(KoLeoLoss32(), feats, 2), rtol=1e-5, atol=1e-6
    )
