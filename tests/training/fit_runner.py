"""Runs ``run_fit`` in a subprocess with recording callbacks (used by the determinism and resume tests;
not collected).

    python -m tests.training.fit_runner OUT_PREFIX STOP_AT HANG_AT -- FIT ARGS...

Writes ``OUT_PREFIX.rank<R>.jsonl`` (one line per step: the batch hash, the on-device augmentation
parameters' hash, the drop-path masks) and ``OUT_PREFIX.rank<R>.pt`` (the parameters when
``global_step == STOP_AT``, where it stops). ``HANG_AT`` > 0 sleeps at that step (to be SIGKILLed).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch

from ssl_cyto.training import fit
from ssl_cyto.training.callbacks.step_budget import StepBudget


def tensor_hash(values: Any) -> str:
    h = hashlib.sha1()
    for v in values if isinstance(values, list | tuple) else [values]:
        if isinstance(v, torch.Tensor):
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def aug_params_hash(module: pl.LightningModule) -> str | None:
    views = getattr(module, "_device_views", None)
    if views is None or not views._pipes:
        return None
    tensors = []
    for item in views._pipes[0]._params or []:
        data = item.data if isinstance(item.data, dict) else {}
        tensors += [v for v in data.values() if isinstance(v, torch.Tensor)]
    return tensor_hash(tensors)


class Recorder(pl.Callback):
    def __init__(self, prefix: str, stop_at: int, hang_at: int) -> None:
        self.prefix, self.stop_at, self.hang_at = prefix, stop_at, hang_at
        self.drops: list[list[bool]] = []
        self._hooked = False

    def _hook(self, module: pl.LightningModule) -> None:
        for m in module.backbone.modules():
            if type(m).__name__ == "DropPath":
                m.register_forward_hook(self._record_drop)
        self._hooked = True

    def _record_drop(self, mod: Any, inp: Any, out: torch.Tensor) -> None:
        if mod.training:
            self.drops.append((out.flatten(1) == 0).all(1).tolist())

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, i: int
    ) -> None:
        if not self._hooked:
            self._hook(pl_module)
        self._batch = tensor_hash(batch)
        self._aug = aug_params_hash(pl_module)
        self.drops = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        row = {"step": step, "batch": self._batch, "aug": self._aug, "drops": self.drops}
        with open(f"{self.prefix}.rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if step == self.stop_at:
            params = {k: v.detach().clone() for k, v in pl_module.named_parameters()}
            torch.save(
                {"params": params, "budget": getattr(pl_module, "step_budget", None)},
                f"{self.prefix}.rank{trainer.global_rank}.pt",
            )
            trainer.should_stop = True
        if step == self.hang_at:
            time.sleep(600)


def budget_callbacks() -> list[pl.Callback]:
    """A StepBudget unless training/fit.py registers one itself."""
    return [] if "StepBudget" in inspect.getsource(fit) else [StepBudget(probe_steps=3)]


def main(argv: list[str]) -> None:
    prefix, stop_at, hang_at = argv[0], int(argv[1]), int(argv[2])
    torch.set_num_threads(1)
    os.environ.setdefault("WANDB_MODE", "offline")
    extra = budget_callbacks()
    args = argv[4:] if extra else [*argv[4:], "--budget.probe_steps=3"]
    fit.run_fit(args, callbacks=[Recorder(prefix, stop_at, hang_at), *extra])


if __name__ == "__main__":
    main(sys.argv[1:])
