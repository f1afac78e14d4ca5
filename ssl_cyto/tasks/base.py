"""``SSLTask``: the small LightningModule every SSL method subclasses.

It owns what every method needs: the backbone (built by name, see
:func:`ssl_cyto.models.factory.build_backbone`), the views the data module asks it for, the
optimiser (:mod:`ssl_cyto.tasks.optim`) and its per-step schedule (:mod:`ssl_cyto.tasks.schedule`),
``channels_last``, optional ``torch.compile``, SyncBatchNorm under DDP and the augmentation knobs.

The base declares every shared argument once, typed (LightningCLI and jsonargparse read the
signature). A method declares only its own arguments, plus the shared ones whose default it
changes, and forwards the rest with ``**kwargs``: jsonargparse follows ``super().__init__(**kwargs)``
to this signature, so ``--model.init_args.lr`` etc. stay typed and documented for every method.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import nn

from ssl_cyto.data.loading.seeding import step_seed
from ssl_cyto.models import hub
from ssl_cyto.models.factory import (
    backbone_norm,
    build_backbone,
    default_input_size,
    released_arch,
    sized_kwargs,
)
from ssl_cyto.tasks.optim import build_optimizer, param_groups
from ssl_cyto.tasks.schedule import ScheduleMixin
from ssl_cyto.transforms import CellAugment, DecodeOnly, DeviceViews, EvalTransform, MultiView, ViewSpec


def released_start(backbone: str, record: dict[str, Any] | None, hparams: Any) -> bool:
    """Whether to load released weights into the backbone: yes for a fresh run (the record is saved
    in ``hparams`` so checkpoints carry it); no when a record is given (resume, export: the weights
    come from the checkpoint and the architecture from the record, without the hub)."""
    if record:
        hub.remember(record)
        return False
    if hub.is_released(backbone):
        hparams["backbone_source"] = hub.resolve(backbone).record()
    return True


class SSLTask(ScheduleMixin, pl.LightningModule):
    """Shared base of the SSL methods (not trained on its own).

    Args:
        backbone: timm name, ``tiny_cnn`` or ``colour_hist``.
        backbone_kwargs: options for the backbone (e.g. ``{"width": 32}``, ``{"pool": "multiscale"}``).
        input_size: side of the (global) training views and of the eval transform (a ViT is built for it);
            default: released weights' own (224 for a ViT-S/14 of DINOv2 or DinoBloom), else 96.
        checkpoint_path: local weights to start the backbone from (never downloaded).
        backbone_source: filled in by the task when ``backbone`` names released weights (their
            :meth:`ssl_cyto.models.hub.Released.record`); a resumed run or an export rebuilds the
            architecture from it without the hub (the weights come from the checkpoint).
        optimizer: ``lars`` (large batches), ``adamw`` or ``sgd``.
        lr: base learning rate, scaled by ``lr_scaling`` with the global batch.
        lr_scaling: ``linear`` (lr * B / 256), ``sqrt`` (lr * sqrt(B / 256)) or ``none``.
        weight_decay: weight decay of weights (never of biases / norm parameters).
        warmup_epochs: linear warm-up length in epochs (may be fractional).
        warmup_steps: warm-up length in optimiser steps (overrides ``warmup_epochs`` when set).
        min_lr_ratio: final LR of the cosine decay, as a fraction of the peak.
        momentum: momentum of SGD / LARS.
        channels_last: use the channels-last memory format (faster convolutions on GPUs).
        compile: ``torch.compile`` the backbone forward (state-dict keys unchanged).
        sync_batchnorm: convert BatchNorm to SyncBatchNorm when training on several GPUs (not on CPU).
        augment_on_device: decode in the loader only, augment on the device with kornia.
        rotate, flip, jitter, hue, grayscale_p, blur_p, crop_scale: augmentation knobs (see
            :class:`ssl_cyto.transforms.CellAugment`).
    """

    method: str = "ssl"

    def __init__(
        self,
        backbone: str = "resnet18",
        backbone_kwargs: dict[str, Any] | None = None,
        input_size: int | None = None,
        checkpoint_path: str | None = None,
        backbone_source: dict[str, Any] | None = None,
        optimizer: Literal["lars", "adamw", "sgd"] = "adamw",
        lr: float = 2e-3,
        lr_scaling: Literal["linear", "sqrt", "none"] = "linear",
        weight_decay: float = 0.05,
        warmup_epochs: float = 1.0,
        warmup_steps: int | None = None,
        min_lr_ratio: float = 0.0,
        momentum: float = 0.9,
        channels_last: bool = False,
        compile: bool = False,
        sync_batchnorm: bool = True,
        augment_on_device: bool = False,
        rotate: bool = True,
        flip: bool = True,
        jitter: float = 0.2,
        hue: float = 0.02,
        grayscale_p: float = 0.0,
        blur_p: float = 0.2,
        crop_scale: tuple[float, float] = (0.4, 1.0),
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # collects the subclasses' __init__ arguments too
        self.backbone_name = backbone
        pretrained = released_start(backbone, backbone_source, self.hparams)
        input_size = input_size or (default_input_size(backbone) if hub.is_released(backbone) else 96)
        self.backbone_kwargs = sized_kwargs(backbone, input_size, backbone_kwargs)
        self.input_size = int(input_size)
        self.backbone, self.embed_dim = build_backbone(
            backbone, checkpoint_path=checkpoint_path, pretrained=pretrained, **self.backbone_kwargs
        )
        mean, std = backbone_norm(backbone)
        self.aug = CellAugment(
            rotate=rotate, flip=flip, jitter=jitter, hue=hue, grayscale_p=grayscale_p, mean=mean, std=std
        )
        self._global_batch: int | None = None
        self._device_views: DeviceViews | None = None
        self._seeded_step = -1
        self._micro = 0

    @property
    def hp(self) -> Any:
        """``self.hparams`` with attribute access typed loosely (all ``__init__`` arguments)."""
        return self.hparams

    # ---- views (the data module asks the task for them) -------------------------------------------
    def view_specs(self) -> list[ViewSpec]:
        """The views one training sample yields (overridden per method)."""
        raise NotImplementedError

    @property
    def train_transform(self) -> Any:
        """PIL RGB -> list[Tensor]: all views (CPU path) or one uint8 tensor (``augment_on_device``)."""
        if self.hp.augment_on_device:
            return DecodeOnly(max(v.size for v in self.view_specs()))
        return MultiView(self.view_specs(), self.aug)

    @property
    def eval_transform(self) -> EvalTransform:
        """PIL RGB -> normalised Tensor at ``input_size`` (resize shorter side, centre crop)."""
        return EvalTransform(self.input_size, self.aug.mean, self.aug.std)

    def seed_step(self) -> int:
        """Reseed the global torch RNG (CPU and every accelerator) for this training batch.

        The seed is :func:`ssl_cyto.data.loading.seeding.step_seed` of (``seed_everything``'s seed, global
        rank, global step, micro-batch within the step), so the on-device views and the drop-path /
        dropout masks of the step differ between ranks and a resumed run draws what the uninterrupted
        run drew.

        Returns:
            The seed.
        """
        trainer = self.trainer
        step, rank = int(trainer.global_step), int(trainer.global_rank)
        self._micro = self._micro + 1 if self._seeded_step == step else 0
        self._seeded_step = step
        seed = step_seed(int(os.environ.get("PL_GLOBAL_SEED", 0)), rank, step, self._micro)
        torch.manual_seed(seed)
        return seed

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self._trainer
        training = trainer.training if trainer is not None else self.training
        if training and trainer is not None:
            self.seed_step()
        if training and self.hp.augment_on_device:
            if self._device_views is None:
                self._device_views = DeviceViews(self.view_specs(), self.aug)
            with torch.no_grad():
                batch = self._device_views(batch[0])
        if self.hp.channels_last and isinstance(batch, list | tuple):
            batch = [b.contiguous(memory_format=torch.channels_last) if b.ndim == 4 else b for b in batch]
        return batch

    # ---- model ------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, D)."""
        fwd = self.__dict__.get("_compiled_backbone")  # not `or`: bool() of a compiled module calls len()
        return (self.backbone if fwd is None else fwd)(x)

    def export_backbone(self) -> nn.Module:
        """The backbone to export for embedding (DINO overrides: the teacher)."""
        return self.backbone

    def export_meta(self) -> dict[str, Any]:
        """``model.json`` fields this task knows (``save_backbone`` adds weights, versions, date); a
        backbone started from released weights records its timm architecture and ``source``."""
        meta = {
            "architecture": self.backbone_name,
            "backbone_kwargs": self.backbone_kwargs,
            "embed_dim": self.embed_dim,
            "input_size": self.input_size,
            "mean": list(self.aug.mean),
            "std": list(self.aug.std),
            "method": self.method,
        }
        if hub.is_released(self.backbone_name):
            arch, options = released_arch(self.backbone_name, self.backbone_kwargs)
            rel = hub.resolve(self.backbone_name, weights=False)
            meta.update(architecture=arch, backbone_kwargs=options, source=rel.source(), released=rel.record())
        return meta

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make every checkpoint self-describing (``ssl_cyto.training.export`` rebuilds the task from it)."""
        info = checkpoint.setdefault("ssl_cyto", {})
        info.setdefault("task_class", f"{type(self).__module__}.{type(self).__qualname__}")
        info.setdefault("method", self.method)
        trainer = self._trainer
        record = self.sample_state(int(trainer.global_step)) if trainer is not None else None
        if record is not None:
            info["samples"] = record  # where the schedule stands, in samples (tasks/schedule.py)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Continue the schedule in samples (a reshaped resume converts ``max_steps``: tasks/schedule.py)."""
        self.restore_sample_state((checkpoint.get("ssl_cyto") or {}).get("samples"))

    def setup(self, stage: str) -> None:
        """Hand this task's transforms to the data module (``use_transforms``): the coupling goes one way,
        from the task to the data layer, which never reads the task."""
        trainer = self._trainer
        give = getattr(getattr(trainer, "datamodule", None), "use_transforms", None) if trainer else None
        if callable(give):
            give(self.train_transform, self.eval_transform)

    def configure_model(self) -> None:
        trainer = self._trainer
        # SyncBatchNorm needs an accelerator (PyTorch refuses CPU tensors), so CPU DDP keeps local BN.
        if (
            self.hp.sync_batchnorm
            and trainer is not None
            and trainer.world_size > 1
            and trainer.strategy.root_device.type != "cpu"
        ):
            for name, child in list(self.named_children()):
                setattr(self, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        if self.hp.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.hp.compile and "_compiled_backbone" not in self.__dict__:
            object.__setattr__(self, "_compiled_backbone", torch.compile(self.backbone))

    # ---- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        h = self.hp
        return build_optimizer(h.optimizer, param_groups(self, h.weight_decay), h.lr, h.momentum)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        lr = self.lr_at(self.trainer.global_step, batch[0].shape[0])
        for opt in self.trainer.optimizers:
            for g in opt.param_groups:
                g["lr"] = lr
        self.log("train/lr", lr, on_step=True, on_epoch=False, prog_bar=False, batch_size=batch[0].shape[0])

    def log_loss(self, loss: torch.Tensor, batch_size: int) -> None:
        self.log(
            "train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size
        )
