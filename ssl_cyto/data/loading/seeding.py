"""Seeds and worker identity for the loaders: the same (seed, rank, worker, epoch) gives the same stream."""

from __future__ import annotations

import hashlib

import torch.utils.data


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike ``hash()``)."""
    h = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def current_worker() -> tuple[int, int]:
    """``(worker id, number of workers)`` of the DataLoader worker running this code; ``(0, 1)`` in the main process."""
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)
