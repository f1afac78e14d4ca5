"""The inputs of the committed ``probe.json`` fixtures (``tests/fixtures/probe_json/``).

``python -m tests.evaluation.probe_fixture OUT`` wrote them with the probe of commit da25d6f (before
issue 23's one pipeline); ``tests/evaluation/test_probe_json.py`` rebuilds the same folders, runs
today's probe and checks that every key of the old files is still there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tests.evaluation.emb_folders import blobs, write_emb_dir

CASES = ("holdout20", "cv5", "dinobloom")


def build(case: str, base: Path) -> tuple[Path, dict]:
    """The embedding folder of ``case`` under ``base`` and the probe's keyword arguments."""
    if case == "dinobloom":
        from ssl_cyto.data.scanning import catalog_from_path
        from ssl_cyto.data.synth import synthesize
        from ssl_cyto.formats.embeddings import write_embedding_folder

        root = synthesize(
            base / "bm", layout="bm-mll", per_class=12, seed=0, size=32, classes=["BLA", "EOS", "LYT"]
        )
        cells = catalog_from_path(root).sort_values("cell_id").reset_index(drop=True)
        rng = np.random.default_rng(0)
        y = cells["label"].astype("category").cat.codes.to_numpy()
        x = (rng.normal(size=(3, 8)) * 3)[y] + rng.normal(size=(len(y), 8))
        meta = {"architecture": "tiny_cnn", "method": "simclr", "embed_dim": 8}
        d = write_embedding_folder(base / "emb", x.astype(np.float32), cells, meta, {"data": str(root)})
        other = write_emb_dir(
            base / "other", rng.normal(size=x.shape), list(cells["label"]), ids=list(cells["cell_id"])
        )
        return d, {
            "protocol": "dinobloom",
            "baselines": "none",
            "baseline_dirs": {"noise": other},
            "n_boot": 20,
        }
    x, labels = blobs(25, 3, spread=0.8)
    rng = np.random.default_rng(1)
    r1 = [lab if rng.random() < 0.8 else "C0" for lab in labels]
    r2 = [lab if rng.random() < 0.7 else "C1" for lab in labels]
    sources = ["aml-lmu"] * 45 + ["folder:b"] * 30
    d = write_emb_dir(base / "emb", x, labels, source=sources, reannot=(r1, r2))
    noise = write_emb_dir(base / "noise", rng.normal(size=x.shape), labels, source=sources, method="random")
    return d, {
        "protocol": case,
        "baselines": "none",
        "baseline_dirs": {"random": noise},
        "min_cells": 5,
        "n_boot": 20,
        "fast": case == "cv5",
    }


def main(out: Path) -> None:
    """Write ``OUT/<case>.json`` with the probe of this checkout."""
    import tempfile

    from ssl_cyto.evaluation.probing import probe

    out.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            d, kwargs = build(case, Path(tmp))
            res = probe(d, command="fixture", **kwargs)
            data = json.loads(Path(res["report"]).with_name("probe.json").read_text())
            (out / f"{case}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
