"""How much of the demo's ``--minutes`` pretraining gets.

The stages after pretraining are estimated up front from a timed forward pass of the backbone and
the number of cells, with fixed overheads measured on 2 CPU cores; pretraining gets the rest as
Lightning's ``trainer.max_time``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ssl_cyto.models.factory import build_backbone


def forward_seconds_per_cell(backbone: str, backbone_kwargs: dict[str, Any], input_size: int) -> float:
    """Seconds per cell of the backbone's forward pass on one batch of 64 (after a warm-up batch)."""
    module, _ = build_backbone(backbone, **backbone_kwargs)
    module.eval()
    x = torch.rand(64, 3, input_size, input_size)
    with torch.no_grad():
        module(x[:8])
        t0 = time.perf_counter()
        module(x)
    return (time.perf_counter() - t0) / 64


def estimate_post_training_seconds(n_cells: int, sec_per_cell_forward: float, decode_sec_per_cell: float) -> float:
    """Wall time of export + embed (model and its random-weights twin, colour floor) + index + probe
    + query + UMAP + report, from measured per-cell costs and fixed overheads measured on 2 CPU cores."""
    embed = n_cells * (2 * (sec_per_cell_forward + decode_sec_per_cell) + decode_sec_per_cell)
    probe = 25.0 + n_cells * 0.004  # three feature sets, logistic regression + kNN + bootstrap (fast mode)
    umap = 25.0 + n_cells * 0.003  # numba compile dominates small maps
    fixed = 30.0  # export, index, query gallery, report, process start-up of the stages
    return 1.25 * (embed + probe + umap + fixed)


def max_time(seconds: float) -> str:
    """``seconds`` as Lightning's ``DD:HH:MM:SS`` ``trainer.max_time``."""
    s = int(seconds)
    return f"00:{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"
