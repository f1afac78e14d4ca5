"""Both losses in float32 under CPU bf16 autocast: values and gradients match fp32 within 1e-4
relative, and every floating tensor made inside the losses (the similarity matrices) is float32."""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from torch.overrides import TorchFunctionMode

from ssl_cyto.tasks.precision import DINOLoss32, NTXentLoss32


class DtypeRecorder(TorchFunctionMode):
    """Records the dtype of every floating tensor a torch function returns."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.dtypes.append(t.dtype)
        return out


def _loss_and_grads(loss_fn, inputs: list[torch.Tensor], autocast: bool):  # type: ignore[no-untyped-def]
    xs = [x.clone().requires_grad_(True) for x in inputs]
    rec = DtypeRecorder()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), rec:
        loss = loss_fn(xs)
    loss.backward()
    return loss.detach(), [x.grad for x in xs], rec.dtypes


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_ntxent_is_float32_under_bf16_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    z = [torch.randn(64, 32, generator=g) for _ in range(2)]
    ref, ref_g, _ = _loss_and_grads(lambda xs: NTXentLoss32(temperature=0.1)(*xs), z, autocast=False)
    got, got_g, dtypes = _loss_and_grads(lambda xs: NTXentLoss32(temperature=0.1)(*xs), z, autocast=True)
    assert _rel(got, ref) < 1e-4
    assert all(_rel(a, b) < 1e-4 for a, b in zip(got_g, ref_g, strict=True))
    assert dtypes and set(dtypes) == {torch.float32}
    # the check is not vacuous: lightly's loss as it is runs its matrices in bf16 under autocast
    _, raw_g, raw_dtypes = _loss_and_grads(lambda xs: NTXentLoss(temperature=0.1)(*xs), z, autocast=True)
    assert torch.bfloat16 in raw_dtypes and max(_rel(a, b) for a, b in zip(raw_g, ref_g, strict=True)) > 1e-3


def test_dino_loss_is_float32_under_bf16_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(16, 256, generator=g) * 3 for _ in range(4)]  # 2 teacher + 4 student views

    def loss(xs: list[torch.Tensor]) -> torch.Tensor:
        crit = DINOLoss32(output_dim=256, warmup_teacher_temp=0.04, teacher_temp=0.04)
        crit.center.normal_(generator=torch.Generator().manual_seed(1))
        return crit([xs[0].detach(), xs[1].detach()], xs, teacher_temp=0.04)

    ref, ref_g, _ = _loss_and_grads(loss, views, autocast=False)
    got, got_g, dtypes = _loss_and_grads(loss, views, autocast=True)
    assert _rel(got, ref) < 1e-4
    assert all(_rel(a, b) < 1e-4 for a, b in zip(got_g, ref_g, strict=True))
    assert dtypes and set(dtypes) == {torch.float32}
