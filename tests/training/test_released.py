"""Continue pretraining from released weights, and release the result: fit from a fake-hub ViT starts
student and teacher from the released weights and resumes without the hub; ``export --format timm``
writes a folder timm loads strictly whose own transform reproduces ``ssl-cyto embed``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from ssl_cyto.cli import main as ssl_cyto_main
from ssl_cyto.tasks.registry import CONFIG_DIR
from ssl_cyto.training.fit import run_fit
from tests.models.hub_support import fake_hub, publish


class StepZero(pl.Callback):
    """Keeps the student and teacher backbones as they are when training starts."""

    def __init__(self) -> None:
        self.student: dict[str, torch.Tensor] = {}
        self.teacher: dict[str, torch.Tensor] = {}
        self.local_size = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.global_step == 0:
            self.student = {k: v.clone() for k, v in pl_module.backbone.state_dict().items()}
            self.teacher = {k: v.clone() for k, v in pl_module.teacher_backbone.state_dict().items()}
            self.local_size = pl_module.local_size


def _args(root: Path, data: Path, method: str, backbone: str, steps: int) -> list[str]:
    extra = (
        ["--model.init_args.head_output_dim=64", "--model.init_args.head_hidden_dim=32"]
        if method == "dino"
        else []
    )
    extra += (
        ["--model.init_args.head_bottleneck_dim=16", "--model.init_args.local_size=null"]
        if method == "dino"
        else []
    )
    return [
        "--config", str(CONFIG_DIR / f"smoke_{method}.yaml"),
        f"--trainer.default_root_dir={root}", f"--trainer.max_steps={steps}", "--trainer.enable_progress_bar=false",
        f"--data.data={data}", "--data.batch_size=8", "--data.num_workers=0", "--data.persistent_workers=false",
        "--data.batches_per_epoch=3", "--data.val_size=16", f"--model.init_args.backbone={backbone}",
        "--model.init_args.backbone_kwargs={}", "--model.init_args.input_size=null", "--knn.every_n_epochs=0", *extra,
    ]  # fmt: skip


def test_fit_from_released_vit_then_resume_without_the_hub_then_export(
    synth_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = fake_hub(tmp_path, monkeypatch)
    norm = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    saved = publish(home, "vit", "vit_tiny_patch16_224", img_size=32, data_config=norm)
    seen = StepZero()
    root = tmp_path / "run"
    ckpt = run_fit(_args(root, synth_folder, "dino", "hf-hub:test/vit", 3), callbacks=[seen])
    for key, value in seen.student.items():  # student and teacher start from the released weights
        assert torch.equal(value, saved[key]) and torch.equal(seen.teacher[key], saved[key]), key
    assert seen.local_size == 16  # whole patches of 16
    obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert obj["global_step"] == 3 and obj["hyper_parameters"]["backbone_source"]["name"] == "hf-hub:test/vit"
    shutil.rmtree(home / "hub")  # the hub is gone: a resumed run needs only the checkpoint
    (home / "hub").mkdir()
    monkeypatch.setattr("ssl_cyto.models.hub._KNOWN", {})
    again = run_fit(_args(root, synth_folder, "dino", "hf-hub:test/vit", 4))
    assert torch.load(again, map_location="cpu", weights_only=True)["global_step"] == 4
    _export_round_trip(Path(again), synth_folder, tmp_path / "vit", norm)


def test_export_timm_resnet_round_trip_push_and_refusals(
    synth_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = Path(run_fit(_args(tmp_path / "run", synth_folder, "simclr", "resnet10t", 3)))
    out = _export_round_trip(ckpt, synth_folder, tmp_path / "cnn", None)
    card = (out / "README.md").read_text()
    assert (
        "unknown" in card and "simclr" in card
    )  # a folder of images: licence unknown and "resolve_data_config" in card
    # --push with a stubbed HfApi: uploads where logged in, else one line and exit 2
    pushed: list[tuple[str, str]] = []

    class LoggedIn:
        def whoami(self) -> dict[str, str]:
            return {"name": "me"}

        def create_repo(self, repo: str, exist_ok: bool) -> None:
            pushed.append(("create", repo))

        def upload_folder(self, folder_path: str, repo_id: str) -> None:
            pushed.append((folder_path, repo_id))

    class LoggedOut(LoggedIn):
        def whoami(self) -> dict[str, str]:
            raise OSError("no token")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", LoggedIn)
    args = ["export", str(ckpt), "--format", "timm", "--out", str(tmp_path / "p"), "--push", "org/cells"]
    assert ssl_cyto_main(args) == 0 and pushed[-1] == (str(tmp_path / "p"), "org/cells")
    monkeypatch.setattr(huggingface_hub, "HfApi", LoggedOut)
    capsys.readouterr()
    assert ssl_cyto_main([*args[:-3], str(tmp_path / "q"), "--push", "org/cells"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not logged in" in err[0] and "hf auth login" in err[0]


def _export_round_trip(ckpt: Path, data: Path, out: Path, norm: dict | None) -> Path:
    import timm
    from PIL import Image

    from ssl_cyto.embedding import embed

    assert ssl_cyto_main(["export", str(ckpt), "--format", "timm", "--out", str(out)]) == 0
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()  # strict: every key matched
    cfg = timm.data.resolve_data_config({}, model=model)
    if norm is not None:
        assert tuple(cfg["mean"]) == norm["mean"] and tuple(cfg["std"]) == norm["std"]
    transform = timm.data.create_transform(**cfg)
    emb = embed(
        ckpt, data, out.parent / f"{out.name}-emb", batch_size=4, limit=4, progress=False, device="cpu"
    )
    cells = pd.read_parquet(emb / "cells.parquet")
    vectors = np.load(emb / "embeddings.npy")
    with torch.no_grad():
        for i, row in cells.iterrows():
            img = Image.open(Path(row["root"]) / row["path"]).convert("RGB")
            got = model(transform(img)[None]).numpy()[0]
            np.testing.assert_allclose(got, vectors[int(i)], atol=1e-5, rtol=1e-5)
    meta = json.loads((out / "model.json").read_text())
    assert meta["format_version"] == 2 and meta["export_format"] == "timm"
    return out


def test_export_timm_refuses_what_timm_cannot_represent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ssl_cyto.models.factory import build_backbone
    from ssl_cyto.training.export import ExportError
    from ssl_cyto.training.timm_export import _refuse_untimm

    fixture = Path(__file__).parents[1] / "fixtures" / "main_f8d3bf8" / "simclr_tiny.ckpt"  # tiny_cnn
    assert ssl_cyto_main(["export", str(fixture), "--format", "timm", "--out", str(tmp_path / "t")]) == 2
    assert "cannot represent ssl_cyto's own backbone 'tiny_cnn'" in capsys.readouterr().err
    pooled, _ = build_backbone("resnet10t", pool="multiscale")
    with pytest.raises(ExportError, match="multi-scale pooling"):
        _refuse_untimm(pooled, {"architecture": "resnet10t"}, "x.ckpt")
    assert ssl_cyto_main(["export", str(fixture), "--out", str(tmp_path / "u"), "--push", "a/b"]) == 2


def test_fit_with_released_weights_not_in_the_cache_stops_in_one_line(
    synth_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_hub(tmp_path, monkeypatch)
    argv = _args(tmp_path / "run", synth_folder, "dino", "hf-hub:test/absent", 3)
    assert ssl_cyto_main(["fit", *argv]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "hf-hub:test/absent" in err[0] and "not in the cache" in err[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_model_card_names_each_source_licence(tmp_path: Path) -> None:
    from ssl_cyto.training.timm_export import _data_licences

    (tmp_path / "index.json").write_text(
        json.dumps({"sources": {"aml-lmu": 3, "bm-mll": 2, "folder:mine": 1}})
    )
    assert _data_licences({}, {"data": {"data": str(tmp_path)}}) == {
        "aml-lmu": "CC BY 3.0",
        "bm-mll": "CC BY 4.0",
        "folder:mine": "unknown",
    }
