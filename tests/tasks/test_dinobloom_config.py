"""``configs/dinobloom_vits14.yaml``: DinoBloom-S's recipe resolves in full with the values their
repository states, and (slow) runs 2 steps on generated cells from ViT-S/14 weights: a local weights
file now, a fake Hugging Face hub cache of ``vit_small_patch14_dinov2.lvd142m`` once the released-weights
names are supported (issue 19)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml

from ssl_cyto.cli import main as cli_main
from ssl_cyto.tasks.registry import CONFIG_DIR

CONFIG = CONFIG_DIR / "dinobloom_vits14.yaml"
REPO = Path(__file__).resolve().parents[2]
RELEASED = "vit_small_patch14_dinov2.lvd142m"


def test_recipe_resolves_in_full_as_dinobloom_states_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["fit", "--config", str(CONFIG), "--print_config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"]["class_path"] == "ssl_cyto.tasks.DINOv2"
    m = cfg["model"]["init_args"]
    stated = {  # marrlab/DinoBloom df565ec custom_vits.yaml over ssl_default_config.yaml
        "backbone": RELEASED,
        "input_size": 224,
        "local_size": 98,
        "n_local_crops": 8,
        "drop_path_rate": 0.4,
        "head_bottleneck_dim": 384,
        "head_output_dim": 65536,
        "ibot_separate_head": True,
        "ibot_head_bottleneck_dim": 256,
        "centering": "sinkhorn",
        "koleo_weight": 0.1,
        "momentum_teacher": 0.994,
        "weight_decay": 0.04,
        "weight_decay_end": 0.2,
        "layerwise_decay": 1.0,
        "patch_embed_lr_mult": 0.2,
        "mask_ratio": [0.1, 0.5],
        "mask_probability": 0.5,
        "clip_grad": 3.0,
        "warmup_teacher_temp_epochs": 30,
    }
    assert {k: m[k] for k in stated} == stated
    # base_lr 2e-4 per 1,024 images under DINOv2's sqrt rule, written per 256
    assert m["lr_scaling"] == "sqrt" and m["lr"] * math.sqrt(1024 / 256) == pytest.approx(2e-4)
    # schedules in steps: 500-iteration "epochs", 200 of them, 10 of LR warm-up
    assert cfg["data"]["batches_per_epoch"] == 500 and cfg["data"]["batch_size"] == 320
    assert cfg["trainer"]["max_steps"] == 200 * 500 and m["warmup_steps"] == 10 * 500
    header = CONFIG.read_text().split("seed_everything")[0]
    for difference in ("swiglufused", "FSDP", "clip", "LayerScale", "solarisation", "BalancedPatchDataset"):
        assert difference in header


def fake_hub(cache: Path, weights: dict[str, torch.Tensor], name: str = RELEASED) -> dict[str, str]:
    """A Hugging Face hub cache holding ``weights`` as timm's file for ``name``, as
    ``timm.create_model(name, pretrained=True)`` leaves it (the weights file, no ``config.json``); the
    environment that makes timm read it offline."""
    from safetensors.torch import save_file

    repo = cache / ("models--" + timm.models.get_pretrained_cfg(name).hf_hub_id.replace("/", "--"))
    revision = "0" * 40
    (repo / "snapshots" / revision).mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in weights.items()},
        str(repo / "snapshots" / revision / "model.safetensors"),
    )
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def released_like(img_size: int | None = None) -> dict[str, torch.Tensor]:
    """ViT-S/14 weights unlike any initialisation (LayerScale 1, not timm's 1e-5, so features differ
    between cells and the collapse guard has nothing to report)."""
    torch.manual_seed(0)
    kw = {"img_size": img_size} if img_size else {}
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, **kw)
    with torch.no_grad():
        for name, p in vit.named_parameters():
            p.copy_(torch.ones_like(p) if name.endswith("gamma") else p + 0.02 * torch.randn_like(p))
    return vit.state_dict()


def _fit_two_steps(tmp: Path, data: Path, extra: list[str], env: dict[str, str]) -> Path:
    root = tmp / "run"
    cmd = [sys.executable, "-m", "ssl_cyto", "fit", "--config", str(CONFIG)]
    cmd += [
        "--trainer.accelerator=cpu",
        "--trainer.strategy=auto",
        "--trainer.devices=1",
        "--trainer.precision=32-true",
        "--trainer.max_steps=2",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_model_summary=false",
        "--trainer.benchmark=false",
        "--model.init_args.n_local_crops=2",
        "--model.init_args.head_hidden_dim=64",
        "--model.init_args.head_output_dim=64",
        "--model.init_args.ibot_head_output_dim=64",
        f"--data.data={data}",
        "--data.batch_size=2",
        "--data.num_workers=0",
        "--data.persistent_workers=false",
        "--data.pin_memory=false",
        "--data.val_size=8",
        "--data.val_batch_size=8",
        "--run.logger=none",
        "--knn.at_start=false",
        *extra,
    ]
    full_env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO), WANDB_MODE="offline", **env)
    proc = subprocess.run(cmd, cwd=tmp, env=full_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2
    return root


@pytest.mark.slow
def test_two_steps_from_a_local_vits14_weights_file(tmp_path: Path, synth_folder: Path) -> None:
    path = tmp_path / "vits14_224.pt"
    torch.save(released_like(img_size=224), path)
    extra = [
        "--model.init_args.backbone=vit_small_patch14_dinov2",
        f"--model.init_args.checkpoint_path={path}",
    ]
    _fit_two_steps(tmp_path, synth_folder, extra, {})


@pytest.mark.slow
def test_two_steps_from_a_fake_hub_vits14(tmp_path: Path, synth_folder: Path) -> None:
    env = fake_hub(tmp_path / "hub", released_like())
    _fit_two_steps(tmp_path, synth_folder, [], env)


def test_step0_student_and_teacher_equal_the_fake_hub_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssl_cyto.tasks.dinov2 import DINOv2

    weights = released_like()
    import huggingface_hub.constants as constants

    from ssl_cyto.models import hub

    for key, value in fake_hub(tmp_path / "hub", weights).items():
        monkeypatch.setenv(key, value)
    # huggingface_hub reads its environment once, at import: point the imported constants at the cache
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "_KNOWN", {})
    task = DINOv2(
        backbone=RELEASED, input_size=518, head_hidden_dim=16, head_bottleneck_dim=8, head_output_dim=16
    )
    _ = task.student_encoder, task.teacher_encoder  # wrapping keeps them
    for net in (task.backbone, task.teacher_backbone):
        got = net.state_dict()
        assert all(torch.equal(got[k], v) for k, v in weights.items())
