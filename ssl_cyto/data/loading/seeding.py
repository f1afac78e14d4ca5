"""Seeds as pure functions of position, and worker identity for the loaders.

Every random draw of training is a function of where it happens, never of how the run got there:

* a CPU augmentation of sample ``i`` of epoch ``e`` runs under :func:`seeded` with
  ``mix_seed(seed, "sample", e, i)`` (:func:`sample_seed`; ``i`` is the sample's position in the epoch's
  draw order for catalogs, its ``__key__`` for shards), whichever worker, rank or restart draws it;
* the tasks reseed the global torch RNG at every training step with :func:`step_seed` ``(seed, rank,
  global step, micro-batch)``, so ranks draw different on-device views and drop-path masks, and a
  resumed run draws what the uninterrupted run drew.
"""

from __future__ import annotations

import hashlib
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.utils.data


def mix_seed(*parts: int | str) -> int:
    """A 63-bit seed from integers and strings (stable across processes, unlike ``hash()``)."""
    text = ",".join(str(int(p)) if not isinstance(p, str) else p for p in parts)
    h = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def sample_seed(seed: int, epoch: int, sample: int | str) -> int:
    """Seed of the CPU augmentation of one sample (position or key) in one epoch."""
    return mix_seed(seed, "sample", epoch, sample)


def step_seed(seed: int, rank: int, step: int, micro: int = 0) -> int:
    """Seed of the per-step draws (on-device views, drop-path, dropout) of one rank."""
    return mix_seed(seed, "step", rank, step, micro)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with Python's ``random`` and torch's CPU RNG seeded by ``seed``; both are restored
    afterwards, so the caller's streams are untouched (torchvision draws from torch, the background
    rotation from ``random``)."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def current_worker() -> tuple[int, int]:
    """``(worker id, number of workers)`` of the DataLoader worker running this code; ``(0, 1)`` in the main process."""
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def ignore_preemption_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: loader workers ignore SIGUSR1 and SIGTERM.

    SLURM sends them to every process of a job step; the main process handles them
    (``ssl_cyto.training.preemption``: checkpoint at the next step boundary, then exit) and its workers
    stop with it (torch's worker watchdog ends a worker whose parent is gone). torch installs its own
    SIGTERM handler in each worker; only a ``worker_init_fn`` runs late enough to undo it.
    """
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
