"""``probe --baseline NAME=SPEC``: a model SPEC (here released weights from a fake hub cache) is embedded on
the same cells, cached by its weights' sha256, and gets its row; an embedding folder behaves as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssl_cyto.cli import main as ssl_cyto_main
from ssl_cyto.embedding import embed
from ssl_cyto.evaluation.model_baseline import baseline_folder
from tests.models.hub_support import fake_hub, publish


def test_model_spec_baseline_gets_its_row_and_is_cached(
    synth_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = fake_hub(tmp_path, monkeypatch)
    publish(home, "vit", "vit_tiny_patch16_224", img_size=32)
    emb = embed("tiny_cnn", synth_folder, tmp_path / "emb", batch_size=8, progress=False, device="cpu")
    argv = ["probe", str(emb), "--fast", "--baselines", "none", "--min-cells", "5", "--n-boot", "20"]
    assert ssl_cyto_main([*argv, "--baseline", "vit=hf-hub:test/vit"]) == 0
    folder = next((emb / "baselines").glob("vit-*"))
    model = json.loads((folder / "model.json").read_text())
    assert (
        folder.name == f"vit-{model['weights_sha256'][:12]}" and model["source"]["name"] == "hf-hub:test/vit"
    )
    report = (emb / "probe" / "report.md").read_text()
    assert "| vit | linear probe |" in report and "| vit | kNN k=20 |" in report  # its row ...
    probe = json.loads((emb / "probe" / "probe.json").read_text())
    assert "vit" in probe["models"] and '"vs_baselines": {"vit"' in json.dumps(
        probe
    )  # ... and the paired difference
    stamp = (folder / "embeddings.npy").stat().st_mtime_ns
    assert baseline_folder(emb, "vit", "hf-hub:test/vit", device="cpu") == folder  # cached: not re-embedded
    assert (folder / "embeddings.npy").stat().st_mtime_ns == stamp
    # an embedding folder as SPEC keeps today's meaning: used as it is
    assert baseline_folder(emb, "same", str(folder)) == folder


def test_packed_side_is_read_from_the_shard_index(tmp_path: Path) -> None:
    from ssl_cyto.evaluation.model_baseline import _packed_side

    (tmp_path / "index.json").write_text(json.dumps({"options": {"image_size": 96}}))
    assert _packed_side(str(tmp_path)) == 96  # under a 224 px model: the probe warns
    assert _packed_side(str(tmp_path / "nope")) is None
