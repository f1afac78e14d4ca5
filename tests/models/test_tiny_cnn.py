"""TinyCNN: stage widths, pooling, and the stride-4 stem."""

from __future__ import annotations

import pytest
import torch

from ssl_cyto.models.errors import BackboneError
from ssl_cyto.models.tiny_cnn import TinyCNN


@pytest.mark.parametrize("stem_stride", [2, 4])
def test_feature_width_and_maps(stem_stride: int) -> None:
    net = TinyCNN(width=8, depth=3, pool="multiscale", pool_stages=2, stem_stride=stem_stride).eval()
    x = torch.randn(2, 3, 48, 48)
    assert net(x).shape == (2, 16 + 32)
    first = net.stages[0](x)
    assert first.shape[-1] == 48 // stem_stride  # the stem alone sets the first stage's resolution


def test_stride_four_stem_is_cheaper_in_multiply_adds() -> None:
    """The point of the option: the first stage's second convolution runs on a 4x smaller map."""

    def macs(net: TinyCNN, size: int) -> int:
        total = 0

        def hook(mod: torch.nn.Module, _inp: tuple, out: torch.Tensor) -> None:
            nonlocal total
            assert isinstance(mod, torch.nn.Conv2d)
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels
            total += int(out.numel() * k)

        hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        net.eval()(torch.randn(1, 3, size, size))
        for h in hooks:
            h.remove()
        return total

    assert macs(TinyCNN(32, 4, stem_stride=4), 48) * 3 < macs(TinyCNN(32, 4, stem_stride=2), 48)


def test_bad_stem_stride_is_refused() -> None:
    with pytest.raises(BackboneError, match="stem_stride"):
        TinyCNN(stem_stride=3)
