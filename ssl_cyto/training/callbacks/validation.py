"""Embeddings of the datamodule's labelled validation subset, shared by :class:`OnlineKNN` and
:class:`CollapseGuard` (one pass per global step), and logging at the current step."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

_CACHE_ATTR = "_ssl_cyto_val_embeddings"


def _val_loader(trainer: pl.Trainer) -> Any | None:
    dm = getattr(trainer, "datamodule", None)
    if dm is None or not hasattr(dm, "val_dataloader"):
        return None
    loader = dm.val_dataloader()
    if loader is None or (isinstance(loader, list | tuple) and len(loader) == 0):
        return None
    return loader


def eval_backbone(pl_module: pl.LightningModule) -> Any:
    """The network that gets exported and evaluated: ``export_backbone()`` (DINO: the teacher) when the
    module has it, else ``pl_module.backbone``."""
    export = getattr(pl_module, "export_backbone", None)
    return export() if callable(export) else pl_module.backbone


@torch.no_grad()
def val_embeddings(trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Tensor, Tensor] | None:
    """Embed the datamodule's labelled validation subset with the module's backbone in eval mode.

    The backbone is :func:`eval_backbone` (the network ``ssl-cyto export`` writes). The result is
    cached per global step, so several callbacks share one pass. Under DDP, every rank's share is
    gathered so every rank sees the whole subset.

    Returns:
        ``(embeddings (N, D) float32 on CPU, labels (N,) long)``, or ``None`` when the datamodule has no
        validation subset.
    """
    cached = getattr(trainer, _CACHE_ATTR, None)
    if cached is not None and cached[0] == trainer.global_step:
        return cached[1]
    loader = _val_loader(trainer)
    if loader is None:
        setattr(trainer, _CACHE_ATTR, (trainer.global_step, None))
        return None
    backbone: Any = eval_backbone(pl_module)
    was_training = backbone.training
    backbone.eval()
    embs: list[Tensor] = []
    labs: list[Tensor] = []
    try:
        for images, labels in loader:
            out = backbone(images.to(pl_module.device, non_blocking=True))
            embs.append(out.float().cpu())
            labs.append(torch.as_tensor(labels).long().cpu())
    finally:
        backbone.train(was_training)
    emb = torch.cat(embs) if embs else torch.zeros(0, 1)
    lab = torch.cat(labs) if labs else torch.zeros(0, dtype=torch.long)
    if trainer.world_size > 1:
        emb, lab = _gather_uneven(pl_module, emb, lab)
    result = (emb, lab)
    setattr(trainer, _CACHE_ATTR, (trainer.global_step, result))
    return result


def _gather_uneven(pl_module: pl.LightningModule, emb: Tensor, lab: Tensor) -> tuple[Tensor, Tensor]:
    """All-gather per-rank tensors of different lengths (pad to the longest, then trim).

    A rank may hold no cell at all (``val_size`` below the world size): its ``(0, 1)`` placeholder
    takes the embedding width of the others.
    """
    device = pl_module.device
    gather: Any = pl_module.all_gather
    shape = torch.tensor([emb.shape[0], emb.shape[1] if emb.shape[0] else 0], device=device)
    shapes = gather(shape).reshape(-1, 2).tolist()
    sizes = [int(n) for n, _ in shapes]
    width = max(1, *(int(d) for _, d in shapes))
    longest = max(1, *sizes)
    pad_e = torch.zeros(longest, width, device=device)
    pad_e[: emb.shape[0]] = emb.to(device)
    pad_l = torch.full((longest,), -1, dtype=torch.long, device=device)
    pad_l[: lab.shape[0]] = lab.to(device)
    all_e = gather(pad_e).reshape(len(sizes), longest, width)
    all_l = gather(pad_l).reshape(len(sizes), longest)
    es = [all_e[i, :s].cpu() for i, s in enumerate(sizes)]
    ls = [all_l[i, :s].cpu() for i, s in enumerate(sizes)]
    return torch.cat(es), torch.cat(ls)


def log_now(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """Send metrics straight to every logger at the current global step (rank zero only)."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
