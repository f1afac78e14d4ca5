"""ssl_cyto.models.hub: released weights from a fake offline hub cache load exactly; what cannot be had
stops at once in one line; foreign formats and unsafe pickles are refused by name."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from ssl_cyto.models import hub
from ssl_cyto.models.errors import BackboneError
from ssl_cyto.models.factory import backbone_norm, build_backbone, default_input_size, is_vit
from ssl_cyto.models.state import load_state_strict, load_weights_into
from tests.models.hub_support import REVISION, fake_hub, publish


def _equal(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    got = module.state_dict()
    assert set(got) <= set(saved)
    for key, value in got.items():
        assert torch.equal(value, saved[key]), key


def test_hf_hub_vit_and_resnet_load_the_saved_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = fake_hub(tmp_path, monkeypatch)
    norm = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    vit = publish(home, "vit", "vit_tiny_patch16_224", img_size=32, data_config=norm)
    cnn = publish(home, "cnn", "resnet18", safetensors=False)  # pytorch_model.bin only
    module, dim = build_backbone("hf-hub:test/vit")
    _equal(module, vit)
    assert dim == 192 and default_input_size("hf-hub:test/vit") == 32 and is_vit("hf-hub:test/vit")
    assert backbone_norm("hf-hub:test/vit") == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    module, _ = build_backbone("hf-hub:test/cnn")
    _equal(module, cnn)
    rel = hub.resolve("hf-hub:test/cnn")
    assert rel.revision == REVISION and rel.architecture == "resnet18" and len(str(rel.file_sha256)) == 64
    assert backbone_norm("hf-hub:test/cnn")[0] == pytest.approx((0.485, 0.456, 0.406))
    # a revision pins the snapshot
    assert hub.resolve(f"hf-hub:test/cnn@{REVISION}").revision == REVISION


def test_timm_name_with_tag_comes_from_timm_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = fake_hub(tmp_path, monkeypatch)
    # timm keeps resnet18.a1_in1k's weights in the hub repository timm/resnet18.a1_in1k
    repo = home / "hub" / "models--test--resnet18.a1_in1k"
    saved = publish(home, "resnet18.a1_in1k", "resnet18", seed=3)
    repo.rename(home / "hub" / "models--timm--resnet18.a1_in1k")
    module, _ = build_backbone("resnet18.a1_in1k")
    _equal(module, saved)


def test_empty_cache_is_one_line_within_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub(tmp_path, monkeypatch)
    for name in ("resnet18.a1_in1k", "hf-hub:test/missing"):
        t0 = time.monotonic()
        with pytest.raises(hub.HubUnavailableError) as info:
            build_backbone(name)
        assert time.monotonic() - t0 < 5
        text = str(info.value)
        assert "\n" not in text and name in text and "HF_HUB_OFFLINE=1" in text and "--weights FILE" in text
    assert "--model resnet18 --weights FILE" in str(
        pytest.raises(hub.HubUnavailableError, build_backbone, "resnet18.a1_in1k").value
    )


def test_foreign_formats_get_their_own_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = fake_hub(tmp_path, monkeypatch)
    publish(home, "hf_dinov2", "resnet18", config={"model_type": "dinov2", "architectures": ["Dinov2Model"]})
    with pytest.raises(hub.NotTimmFormatError, match="transformers model .dinov2.*not timm's format"):
        build_backbone("hf-hub:test/hf_dinov2")
    (tmp_path / "release").mkdir()
    with pytest.raises(hub.NotTimmFormatError, match="config.json not found"):
        build_backbone(f"local-dir:{tmp_path / 'release'}")


def test_local_dir_and_remember_need_no_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    fake_hub(tmp_path, monkeypatch)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32)
    timm.models.save_for_hf(model, str(tmp_path / "dir"), safe_serialization=True)
    module, _ = build_backbone(f"local-dir:{tmp_path / 'dir'}")
    _equal(module, model.state_dict())
    record = json.loads(json.dumps(hub.resolve(f"local-dir:{tmp_path / 'dir'}").record()))
    monkeypatch.setattr(hub, "_KNOWN", {})
    record["name"] = "hf-hub:test/gone"  # not in any cache: remembered, so the architecture builds
    hub.remember(record)
    arch_only, _ = build_backbone("hf-hub:test/gone", pretrained=False)
    assert set(arch_only.state_dict()) == set(module.state_dict())


def test_dinov2_style_keys_map_or_are_refused_by_name(tmp_path: Path) -> None:
    import timm

    src = timm.create_model("vit_tiny_patch16_224", img_size=32, init_values=1e-5, num_classes=0)
    sd = dict(src.state_dict())
    assert any(k.endswith("ls1.gamma") for k in sd)
    sd["mask_token"] = torch.zeros(1, 192)  # as in DINOv2's own checkpoints
    dst = timm.create_model("vit_tiny_patch16_224", img_size=32, init_values=1e-5, num_classes=0)
    load_state_strict(dst, dict(sd), "dinov2.pth")  # timm's converter drops mask_token
    _equal(dst, src.state_dict())
    cnn, _ = build_backbone("resnet18")
    with pytest.raises(BackboneError, match=r"0 of \d+ backbone tensors map.*mask_token"):
        load_state_strict(cnn, dict(sd), "dinov2.pth")


class Opaque:
    """A pickled object that torch.load(weights_only=True) refuses."""


def test_unsafe_pickles_need_trust_and_safetensors_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    module, _ = build_backbone("tiny_cnn", width=4, depth=2)
    torch.save(
        {"state_dict": {f"backbone.{k}": v for k, v in module.state_dict().items()}, "x": Opaque()},
        tmp_path / "p.ckpt",
    )
    other, _ = build_backbone("tiny_cnn", width=4, depth=2)
    with pytest.raises(BackboneError, match="--trust-weights"):
        load_weights_into(other, tmp_path / "p.ckpt")
    load_weights_into(other, tmp_path / "p.ckpt", trust=True)
    _equal(other, module.state_dict())
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp_path / "w.safetensors"))
    third, _ = build_backbone("tiny_cnn", width=4, depth=2, checkpoint_path=str(tmp_path / "w.safetensors"))
    _equal(third, module.state_dict())


def test_other_ranks_wait_for_rank_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = fake_hub(tmp_path, monkeypatch)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(hub, "RANK_WAIT_S", 0.5)
    with pytest.raises(hub.HubUnavailableError, match="rank 0 did not fetch"):  # bounded, then one line
        hub.resolve("hf-hub:test/late")
    saved = publish(home, "late", "resnet18")  # rank 0 has fetched it: rank 1 reads the cache
    module, _ = build_backbone("hf-hub:test/late")
    _equal(module, saved)
