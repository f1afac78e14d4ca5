"""A released model as a baseline row: ``probe --baseline NAME=SPEC`` where SPEC is a ``--model`` spec.

``SPEC`` that is an embedding folder keeps its meaning (a baseline embedded elsewhere). Any other SPEC
- released weights such as a timm port of DinoBloom (``hf-hub:1aurent/vit_small_patch14_224.dinobloom``,
Koch et al., MICCAI 2024), a backbone folder, a ``.ckpt`` - is embedded on the same cells as
``EMB_DIR`` (the data its ``embed.json`` records) through the one encoder path, into
``EMB_DIR/baselines/<NAME>-<sha12>/``, cached by the weights' sha256: a second probe reuses it. The
probe then scores it like any baseline, with its row and the paired difference in every table.

A warning is printed when the cells were packed smaller than the model's input size (the model
would see upsampled cells; DinoBloom was trained at 224 px).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ssl_cyto.embedding.model_spec import load_model
from ssl_cyto.embedding.runner import embed
from ssl_cyto.evaluation.protocol import ProbeError
from ssl_cyto.formats.embeddings import is_embedding_folder, read_embed_json

__all__ = ["BASELINES_DIR", "baseline_folder"]

BASELINES_DIR = "baselines"


def _packed_side(data: str) -> int | None:
    """The shorter side cells were packed to (``ssl-cyto pack --image-size``), when the shards say."""
    index = Path(data) / "index.json"
    if not index.is_file():
        return None
    options = json.loads(index.read_text(encoding="utf-8")).get("options") or {}
    side = options.get("image_size")
    return int(side) if side else None


def baseline_folder(emb_dir: str | Path, name: str, spec: str, *, device: str = "auto") -> Path:
    """The embedding folder of baseline ``NAME=SPEC``: ``spec`` itself when it is one, else ``spec``
    embedded on ``emb_dir``'s cells (cached by its weights' sha256).

    Raises:
        ProbeError: ``emb_dir`` records no data to embed again.
    """
    if is_embedding_folder(spec):
        return Path(spec)
    emb = Path(emb_dir)
    info = read_embed_json(emb)
    data = info.get("data_path") or info.get("shards") or info.get("data")
    if not data:
        raise ProbeError(f"--baseline {name}={spec}: {emb}/embed.json records no data to embed {spec} on")
    _, meta, _ = load_model(spec)
    sha = str(meta["weights_sha256"])
    out = emb / BASELINES_DIR / f"{name}-{sha[:12]}"
    packed = _packed_side(str(data))
    if packed is not None and packed < int(meta["input_size"]):
        print(
            f"warning: --baseline {name}: the cells were packed at {packed} px, smaller than the model's "
            f"{meta['input_size']} px input; it sees upsampled cells (repack with `ssl-cyto pack --image-size` "
            f"{meta['input_size']} for a fair row)",
            file=sys.stderr,
        )
    limit = (info.get("options") or {}).get("limit")
    print(f"probe: embedding baseline {name} ({spec}) into {out}", file=sys.stderr)
    embed(spec, str(data), out, limit=limit, device=device, progress=False)
    return out
