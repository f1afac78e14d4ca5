"""Export round trip: checkpoint -> backbone folder -> load_backbone gives the same network and features."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import torch

from ssl_cyto.cli import main as ssl_cyto_main
from ssl_cyto.cli.export import add_arguments, run
from ssl_cyto.formats.model_json import MODEL_JSON_KEYS
from ssl_cyto.models.weights import load_backbone_folder
from ssl_cyto.tasks.registry import CONFIG_DIR
from ssl_cyto.training.export import ExportError, backbone_from_checkpoint, export_checkpoint
from ssl_cyto.training.fit import run_fit


def _train(tmp_path: Path, data: Path, method: str) -> Path:
    extra = []
    if method == "dino":
        extra = [
            "--model.init_args.local_size=16",
            "--model.init_args.head_output_dim=64",
            "--model.init_args.head_hidden_dim=32",
            "--model.init_args.head_bottleneck_dim=16",
        ]
    args = [
        "--config",
        str(CONFIG_DIR / f"smoke_{method}.yaml"),
        f"--trainer.default_root_dir={tmp_path / method}",
        "--trainer.max_steps=3",
        "--trainer.enable_progress_bar=false",
        f"--data.data={data}",
        "--data.batch_size=8",
        "--data.num_workers=0",
        "--data.persistent_workers=false",
        "--data.batches_per_epoch=3",
        "--data.val_size=16",
        "--model.init_args.backbone_kwargs={width: 4, depth: 2}",
        "--model.init_args.input_size=32",
        "--knn.every_n_epochs=0",
        *extra,
    ]
    return Path(run_fit(args))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory, synth_folder: Path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("export")
    return {m: _train(tmp, synth_folder, m) for m in ("simclr", "dino")}


@pytest.mark.parametrize("method", ["simclr", "dino"])
def test_export_round_trip(method: str, ckpts: dict[str, Path], tmp_path: Path) -> None:
    ckpt = ckpts[method]
    out = export_checkpoint(ckpt, tmp_path / "backbone")
    meta = json.loads((out / "model.json").read_text())
    assert set(MODEL_JSON_KEYS) <= set(meta)
    assert meta["architecture"] == "tiny_cnn" and meta["backbone_kwargs"] == {"width": 4, "depth": 2}
    assert meta["input_size"] == 32 and meta["method"] == method
    assert meta["weights_sha256"] == hashlib.sha256((out / "weights.pt").read_bytes()).hexdigest()
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert meta["config_hash"] == saved["ssl_cyto"]["config_hash"] and meta["seed"] == 0
    assert meta["git_commit"] == saved["ssl_cyto"]["git_commit"]
    assert {"torch", "pytorch-lightning"} <= set(meta["package_versions"])

    # The exported weights are the ones the task exports: DINO the teacher, SimCLR the backbone.
    prefix = "teacher_backbone." if method == "dino" else "backbone."
    expected = {k[len(prefix) :]: v for k, v in saved["state_dict"].items() if k.startswith(prefix)}
    weights = torch.load(out / "weights.pt", map_location="cpu", weights_only=True)
    assert set(weights) == set(expected)
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    if method == "dino":  # the teacher is not the student after training
        student = {
            k[len("backbone.") :]: v for k, v in saved["state_dict"].items() if k.startswith("backbone.")
        }
        assert any(
            not torch.equal(student[k], expected[k]) for k in expected if expected[k].is_floating_point()
        )

    # Loading the folder and the checkpoint gives the same features.
    a, meta_a = load_backbone_folder(out)
    b, meta_b = backbone_from_checkpoint(ckpt)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        fa, fb = a(x), b.eval()(x)
    assert fa.shape == (4, meta["embed_dim"])
    assert torch.allclose(fa, fb)
    assert meta_b["global_step"] == 3


def test_export_cli(ckpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args([str(ckpts["simclr"]), "--out", str(tmp_path / "bb")])) == 0
    assert "exported simclr tiny_cnn" in capsys.readouterr().out
    assert (tmp_path / "bb" / "model.json").exists()
    # an expected error goes through the dispatcher: one line, exit 2
    assert ssl_cyto_main(["export", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "x")]) == 2
    assert "missing.ckpt" in capsys.readouterr().err


def test_export_rejects_foreign_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError, match="bad.ckpt"):
        backbone_from_checkpoint(bad)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, plain)
    with pytest.raises(ExportError, match="which task"):
        backbone_from_checkpoint(plain)
