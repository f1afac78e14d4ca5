"""iBOT's masked-patch loss against a reference computation on the masked tokens only."""

from __future__ import annotations

import pytest
import torch

from ssl_cyto.formats.errors import InputError
from ssl_cyto.tasks.ibot_loss import IBOTLoss
from tests.tasks.test_sinkhorn_loss import dinov2_reference


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    t = torch.randn(4, 9, 6, generator=g)  # (images, patches, prototypes): full token outputs
    s = torch.randn(4, 9, 6, generator=g)
    mask = torch.zeros(4, 3, 3, dtype=torch.bool)
    mask[0, :2, :2] = True  # 4 patches
    mask[2, 1, :] = True  # 3 patches; images 1 and 3 unmasked
    return t, s, mask


def reference(t: torch.Tensor, s: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over images (unmasked ones count 0) of the mean cross-entropy over their masked patches."""
    flat = mask.flatten(1)
    rows = iter(targets)
    per_image = []
    for i in range(len(t)):
        ce = [-(next(rows) * torch.log_softmax(s[i, j] / 0.1, dim=-1)).sum() for j in range(9) if flat[i, j]]
        per_image.append(torch.stack(ce).mean() if ce else torch.zeros(()))
    return torch.stack(per_image).mean()


def test_sinkhorn_ibot_matches_reference_on_masked_tokens_only() -> None:
    t, s, mask = _inputs()
    flat = mask.flatten(1)
    loss = IBOTLoss(output_dim=6, student_temp=0.1, centering="sinkhorn")
    value = loss(t[flat], s[flat], mask, teacher_temp=0.05)
    targets = dinov2_reference(t[flat].double(), 0.05).float()  # Sinkhorn over the 7 masked patches
    torch.testing.assert_close(value, reference(t, s, mask, targets))
    # the unmasked tokens play no part: changing them changes nothing
    t2, s2 = t.clone(), s.clone()
    t2[~flat] += 5.0
    s2[~flat] -= 5.0
    torch.testing.assert_close(loss(t2[flat], s2[flat], mask, teacher_temp=0.05), value)


def test_mean_centring_is_lightlys_and_bf16_gives_float32() -> None:
    t, s, mask = _inputs()
    flat = mask.flatten(1)
    loss = IBOTLoss(output_dim=6, student_temp=0.1, centering="mean")
    loss.center.center.fill_(0.3)
    value = loss(t[flat], s[flat], mask, teacher_temp=0.05)
    targets = torch.softmax((t[flat] - 0.3) / 0.05, dim=-1)
    torch.testing.assert_close(value, reference(t, s, mask, targets))
    assert not torch.allclose(loss.center.center, torch.full_like(loss.center.center, 0.3))  # moved
    sk = IBOTLoss(output_dim=6, centering="sinkhorn")
    ref = sk(t[flat], s[flat], mask, teacher_temp=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = sk(t[flat].bfloat16(), s[flat], mask, teacher_temp=0.05)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, ref, rtol=2e-2, atol=2e-2)  # only the bf16 input rounding
    with pytest.raises(InputError, match="centering"):
        IBOTLoss(centering="median")  # type: ignore[arg-type]
