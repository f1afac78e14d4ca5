"""Per-source sampling weights of shard streams, decided once per cell and pass before the stream is split.

``source_weights`` are relative per-cell weights: a cell of source ``s`` is kept with probability
``w_s / max w`` (:func:`source_accept`). With the shard counts of ``index.json`` the acceptance of every
cell in a pass of the data is drawn once, up front (:class:`AcceptedPool`): the *accepted stream* is the
accepted cells of the pass's shard permutation, pass after pass, and the readers (ranks x DataLoader
workers) cut that stream into disjoint ranges. So every accepted cell is read by exactly one reader per
pass. (Before, each reader rejected cells of its own range and read on into its neighbours' ranges to fill
its quota: with ``{"aml-lmu": 9.0}`` each accepted cell was read by about five readers per epoch, with the
same augmentation, which SimCLR takes as false negatives.)

The pool needs each cell's key and source: they are read once from the tar headers and the small
``.json`` members (:func:`scan_shard`; the images are skipped, not read). When an epoch asks for more
cells than a pass accepts, the epoch continues into the next pass, which is said once on stderr.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import sys
import tarfile
from collections.abc import Iterable

import numpy as np
from webdataset.tariterators import base_plus_ext

from ssl_cyto.data.loading.resolve import DataSpecError
from ssl_cyto.data.loading.seeding import mix_seed

__all__ = ["DEFAULT_KEY", "AcceptedPool", "scan_shard", "source_accept"]

DEFAULT_KEY = "__default__"  # key of source_accept's result: the acceptance of unlisted sources


def source_accept(source_weights: dict[str, float] | None, known: set[str] | None) -> dict[str, float] | None:
    """Per-source acceptance probabilities ``w_s / max w`` (None: accept everything).

    Unlisted sources have weight 1.0 (the key ``"__default__"`` of the result holds their probability).

    Raises:
        DataSpecError: a negative or non-finite weight, a source not in ``known``, or all weights 0.
    """
    if not source_weights:
        return None
    for s, w in source_weights.items():
        if not (isinstance(w, (int, float)) and w >= 0 and math.isfinite(w)):
            raise DataSpecError(f"source_weights[{s!r}] = {w!r}: weights must be finite and >= 0")
    if known is not None:
        unknown = sorted(set(source_weights) - known)
        if unknown:
            raise DataSpecError(
                f"source_weights names source(s) {unknown} not in the data; its sources: {sorted(known)}"
            )
    unlisted_exist = known is None or bool(known - set(source_weights))
    top = max([*source_weights.values(), *([1.0] if unlisted_exist else [])])
    if top <= 0:
        raise DataSpecError("source_weights: every source has weight 0; nothing to sample")
    return {s: w / top for s, w in source_weights.items()} | {DEFAULT_KEY: 1.0 / top}


def scan_shard(url: str) -> list[tuple[str, str | None]]:
    """``(key, source)`` of each sample of a local shard, in tar order (images skipped, not read).

    Keys are split from member names as WebDataset does (``base_plus_ext``); the source is the
    ``source`` field of the sample's ``.json`` member (None when absent or unreadable).
    """
    out: list[tuple[str, str | None]] = []
    key: str | None = None
    src: str | None = None
    with tarfile.open(url, "r:") as tf:
        for member in tf:
            if not member.isfile():
                continue
            base, ext = base_plus_ext(member.name)
            if base is None:
                continue
            if base != key:
                if key is not None:
                    out.append((key, src))
                key, src = base, None
            if ext.lower() == "json":
                fh = tf.extractfile(member)
                try:
                    src = json.loads(fh.read()).get("source") if fh is not None else None
                except (ValueError, AttributeError):
                    src = None
    if key is not None:
        out.append((key, src))
    return out


class AcceptedPool:
    """The accepted cells of every pass: one seeded draw per cell and pass, made before any split.

    Args:
        shards: ``(key, source)`` of each shard's samples (:func:`scan_shard`), in index order.
        accept: acceptance probability by source (:func:`source_accept`).
        seed: base seed.
    """

    def __init__(
        self, shards: list[list[tuple[str, str | None]]], accept: dict[str, float], seed: int
    ) -> None:
        self.keys = [[k for k, _ in s] for s in shards]
        probs = [accept[src] if src in accept else accept[DEFAULT_KEY] for s in shards for _, src in s]
        self.prob = np.asarray(probs, dtype=np.float64)
        self.offsets = [0, *itertools.accumulate(len(s) for s in shards)]
        self.seed = int(seed)
        self._masks: dict[int, list[np.ndarray]] = {}
        self._totals: dict[int, int] = {}

    def masks(self, pass_: int) -> list[np.ndarray]:
        """Per shard (index order), which samples pass ``pass_`` accepts."""
        if pass_ not in self._masks:
            rng = np.random.default_rng(mix_seed(self.seed, "accept", pass_))
            mask = rng.random(len(self.prob)) < self.prob
            if len(self._masks) > 4:
                self._masks.pop(next(iter(self._masks)))
            self._masks[pass_] = [mask[a:b] for a, b in itertools.pairwise(self.offsets)]
        return self._masks[pass_]

    def total(self, pass_: int) -> int:
        """Cells pass ``pass_`` accepts."""
        if pass_ not in self._totals:
            self._totals[pass_] = int(sum(int(m.sum()) for m in self.masks(pass_)))
            if self._totals[pass_] == 0:
                raise DataSpecError(f"source_weights accept no cell in pass {pass_}; check the weights")
        return self._totals[pass_]

    def pass_start(self, pass_: int) -> int:
        """Position of pass ``pass_``'s first cell in the accepted stream."""
        return sum(self.total(p) for p in range(pass_))

    def locate(self, pos: int) -> tuple[int, int]:
        """``(pass, offset within the pass)`` of accepted-stream position ``pos``."""
        p = 0
        while pos >= self.total(p):
            pos -= self.total(p)
            p += 1
        return p, pos

    def accepted_keys(self, pass_: int, shard: int) -> list[str]:
        """Keys of shard ``shard`` accepted in pass ``pass_``, in tar order."""
        mask = self.masks(pass_)[shard]
        return [k for k, ok in zip(self.keys[shard], mask, strict=True) if ok]

    def plan(self, pass_: int, perm: Iterable[int], offset: int) -> tuple[int, int]:
        """``(index into perm, accepted cells of that shard to skip)`` of a pass's ``offset``-th accepted cell."""
        masks = self.masks(pass_)
        cum = list(itertools.accumulate(int(masks[i].sum()) for i in perm))
        q = bisect.bisect_right(cum, offset)
        return q, offset - (cum[q - 1] if q else 0)


def say_pool_short(accepted: int, wanted: int) -> None:
    """Say once that an epoch reads more cells than a pass accepts (it goes on into the next pass)."""
    print(
        f"ssl-cyto data: source_weights accept {accepted} cells per pass, fewer than the {wanted} an epoch "
        "reads; the epoch continues into a new pass (accepted cells then repeat, with new augmentations)",
        file=sys.stderr,
        flush=True,
    )
