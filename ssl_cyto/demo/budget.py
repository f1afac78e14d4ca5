"""How much of the demo's ``--minutes`` pretraining gets.

The stages after pretraining are estimated up front (:func:`estimate_post_training_seconds`) from a
timed forward pass of the backbone (:func:`forward_seconds_per_cell`: a batch of 256 in inference
mode, the way ``ssl-cyto embed`` runs it) and the number of cells; pretraining gets the rest as
Lightning's ``trainer.max_time`` (:func:`pretrain_seconds`).

The constants are calibrated on one measured run, ``results/pbc/demo_budget.md`` (the 10-minute demo on
the 4,800 PBC cells, tiny CNN at 64 px, 2-core AMD EPYC, no GPU): the stages after pretraining took
54 s (export 0.6, embed 6.6, index 0.0, probe with both baselines 15.5, query 1.3, UMAP 29.9), i.e.
about 1.4 ms per cell for one embedding pass. The earlier estimate (a forward pass of 64 with autograd
bookkeeping, a decode cost taken from packing, ~100 s of fixed allowances, all x 1.25) said 182 s, so
the demo ended 149 s early. Now: the measured forward pass per embedding pass (the model, and its
random-weights twin inside the probe), calibrated per-cell and fixed costs for the rest, and a margin of
:data:`MARGIN` x the estimate + :data:`MARGIN_S` so the demo still ends before ``--minutes``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ssl_cyto.models.factory import build_backbone

#: Batch of the timed forward pass (``ssl-cyto embed`` batches are at least this large).
TIMED_BATCH = 256
#: Relative margin on the estimate (a busier machine, jitter).
MARGIN = 1.2
#: Absolute margin in seconds (process start-up of the stages, report writing).
MARGIN_S = 10.0


def forward_seconds_per_cell(
    backbone: str,
    backbone_kwargs: dict[str, Any],
    input_size: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds per cell of the backbone's forward pass: the faster of two timed batches of
    :data:`TIMED_BATCH` in inference mode, after a warm-up batch (``clock`` is replaceable for tests)."""
    module, _ = build_backbone(backbone, **backbone_kwargs)
    module.eval()
    x = torch.rand(TIMED_BATCH, 3, input_size, input_size)
    best = float("inf")
    with torch.inference_mode():
        module(x[:16])
        for _ in range(2):
            t0 = clock()
            module(x)
            best = min(best, clock() - t0)
    return best / TIMED_BATCH


def estimate_post_training_seconds(n_cells: int, sec_per_cell_forward: float) -> float:
    """Wall time of the stages after pretraining, with its margin (see the module docstring).

    Args:
        n_cells: cells embedded, probed and mapped.
        sec_per_cell_forward: :func:`forward_seconds_per_cell` (decoding overlaps it in the loader workers).

    Returns:
        ``MARGIN x (embed + probe + umap + fixed) + MARGIN_S`` seconds.
    """
    embed = 2.0 + n_cells * sec_per_cell_forward  # the model's pass over every cell
    # random-weights twin's pass + colour histograms + logistic regression / kNN / bootstrap (fast)
    probe = 5.0 + n_cells * (sec_per_cell_forward + 0.001)
    umap = 22.0 + n_cells * 0.0017  # numba compilation dominates small maps
    fixed = 4.0  # learning curve, export, index, query gallery
    return MARGIN * (embed + probe + umap + fixed) + MARGIN_S


def pretrain_seconds(minutes: float, elapsed: float, post: float, minimum: float) -> float:
    """Pretraining's share: what ``minutes`` leaves after the ``elapsed`` stages and the ``post`` estimate,
    at least ``minimum`` seconds."""
    return max(minimum, minutes * 60.0 - elapsed - post)


def max_time(seconds: float) -> str:
    """``seconds`` as Lightning's ``DD:HH:MM:SS`` ``trainer.max_time``."""
    s = int(seconds)
    return f"00:{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"
