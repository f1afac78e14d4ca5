"""Released weights in: timm's pretrained names, ``hf-hub:ORG/NAME[@REVISION]`` and ``local-dir:PATH``.

A ``--model`` (or ``backbone``) spec that names released weights is resolved here into a
:class:`Released`: the timm architecture, the arguments it was saved with, its ``pretrained_cfg``
(mean/std, input size, interpolation, crop) and the local weights file, fetched through
``huggingface_hub`` into its usual cache (``HF_HOME``; timm's own names go through the repository
their ``pretrained_cfg`` names, e.g. ``timm/resnet18.a1_in1k``). A download is announced in one line
(name, revision) on stderr. Where the weights cannot be had (``HF_HUB_OFFLINE=1``, no network, not
in the cache, a gated repository) :class:`HubUnavailableError` says so in one line with the ways out;
waits are bounded (``HF_HUB_ETAG_TIMEOUT``, default 5 s here). A repository that is not in timm's
format (a ``.pth`` release, a ``transformers`` model) gets :class:`NotTimmFormatError`.

Under DDP (``RANK``/``LOCAL_RANK``/``SLURM_PROCID`` not 0) only rank 0 fetches; the others wait, at
most :data:`RANK_WAIT_S` seconds, for the files to appear in the cache. A resumed run never needs the
hub: the task records :meth:`Released.record` in its hyper-parameters and :func:`remember` makes the
architecture known again without a fetch (the weights come from the checkpoint).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_cyto.formats.hashing import sha256_file
from ssl_cyto.models.errors import BackboneError
from ssl_cyto.models.registry import WEIGHTS_ADVICE_SHORT, pretrained_tag

__all__ = [
    "HubUnavailableError",
    "NotTimmFormatError",
    "Released",
    "is_released",
    "remember",
    "resolve",
]

#: Files a timm-format repository or folder may hold its weights in, in order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors")
#: The longest a non-zero DDP rank waits for rank 0's fetch (seconds).
RANK_WAIT_S = 900.0
#: Bounded wait for the hub's answer about one file (seconds), unless HF_HUB_ETAG_TIMEOUT says otherwise.
ETAG_TIMEOUT_S = 5.0


class HubUnavailableError(BackboneError):
    """Released weights that cannot be had here (offline, not cached, gated); the message says the ways out."""


class NotTimmFormatError(BackboneError):
    """A hub repository or folder that is not in timm's format (no ``config.json`` with an architecture)."""


@dataclass(frozen=True)
class Released:
    """Released weights resolved to a timm architecture (see the module docstring)."""

    name: str
    architecture: str
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    revision: str | None = None
    weights_file: str | None = None
    file_sha256: str | None = None

    def source(self) -> dict[str, Any]:
        """``{"name", "revision", "file_sha256"}``: where the weights came from (model.json's ``source``)."""
        return {"name": self.name, "revision": self.revision, "file_sha256": self.file_sha256}

    def record(self) -> dict[str, Any]:
        """A JSON-able record from which :func:`remember` rebuilds this (without the local file)."""
        cfg = {k: v for k, v in self.pretrained_cfg.items() if _jsonable(v)}
        return {
            "name": self.name,
            "architecture": self.architecture,
            "model_args": dict(self.model_args),
            "pretrained_cfg": cfg,
            "revision": self.revision,
            "file_sha256": self.file_sha256,
        }

    @property
    def mean(self) -> tuple[float, ...]:
        """The normalisation mean the weights were trained with."""
        return tuple(float(v) for v in self.pretrained_cfg.get("mean", (0.485, 0.456, 0.406)))

    @property
    def std(self) -> tuple[float, ...]:
        """The normalisation std the weights were trained with."""
        return tuple(float(v) for v in self.pretrained_cfg.get("std", (0.229, 0.224, 0.225)))

    @property
    def input_size(self) -> int:
        """The side to train and embed at: the saved ``img_size``, else the config's (DINOv2's 518 -> 224)."""
        if "img_size" in self.model_args:
            size = self.model_args["img_size"]
            return int(size if isinstance(size, int) else size[-1])
        side = int((self.pretrained_cfg.get("input_size") or (3, 224, 224))[-1])
        return 224 if "dinov2" in self.architecture and side > 224 else side

    @property
    def fixed_input_size(self) -> bool:
        """Whether the architecture is built for one input size (a ViT)."""
        return bool(self.pretrained_cfg.get("fixed_input_size", False))


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


_KNOWN: dict[str, Released] = {}
_DOWNLOADED: list[str] = []  # files fetched from the hub by this process (announced once per resolve)


def is_released(name: str) -> bool:
    """Whether a backbone name names released weights (a timm tag, ``hf-hub:``, ``local-dir:``). Torch-free."""
    return name.startswith("local-dir:") or pretrained_tag(name) is not None


def remember(record: dict[str, Any]) -> Released:
    """Make a :meth:`Released.record` known again (a resumed run, a checkpoint): no hub needed."""
    rel = Released(
        name=str(record["name"]),
        architecture=str(record["architecture"]),
        model_args=dict(record.get("model_args") or {}),
        pretrained_cfg=dict(record.get("pretrained_cfg") or {}),
        revision=record.get("revision"),
        file_sha256=record.get("file_sha256"),
    )
    _KNOWN.setdefault(rel.name, rel)
    return _KNOWN[rel.name]


def record_of_checkpoint(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """The released-weights record a training checkpoint carries (``hyper_parameters.backbone_source``),
    or None: what a resumed run needs to rebuild its backbone without the hub."""
    if not path or not Path(path).is_file():
        return None
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, OSError, EOFError, ValueError):
        return None  # not ours to judge here: Lightning reports an unreadable checkpoint itself
    record = (obj.get("hyper_parameters") or {}).get("backbone_source") if isinstance(obj, dict) else None
    return dict(record) if isinstance(record, dict) else None


def resolve(name: str, *, weights: bool = True) -> Released:
    """Resolve released weights by name; with ``weights`` the weights file is fetched too.

    Raises:
        HubUnavailableError: the files cannot be had here (the message names the ways out).
        NotTimmFormatError: a repository or folder not in timm's format.
        BackboneError: an unknown timm name or tag.
    """
    known = _KNOWN.get(name)
    if known is not None and (not weights or known.weights_file):
        return known
    _DOWNLOADED.clear()
    if name.startswith("local-dir:"):
        rel = _resolve_local(name, name.partition(":")[2])
    elif name.startswith(("hf-hub:", "hf_hub:", "timm/")):
        rel = _resolve_hub(name, name.partition(":")[2] if ":" in name else name, weights)
    else:
        rel = _resolve_timm_tag(name, weights)
    if rel.weights_file or known is None:
        _KNOWN[name] = rel
    if _DOWNLOADED:
        print(
            f"ssl-cyto: downloaded {name} (revision {rel.revision}) into the Hugging Face cache",
            file=sys.stderr,
        )
        _DOWNLOADED.clear()
    return rel


# ---- local folders ---------------------------------------------------------------------------------
def _parse_config(name: str, where: str, cfg: dict[str, Any]) -> tuple[str, dict, dict]:
    """``(architecture, model_args, pretrained_cfg)`` of a timm ``config.json`` (legacy or current layout)."""
    if "architecture" not in cfg:
        kind = cfg.get("model_type") or (cfg.get("architectures") or [None])[0]
        what = f"a Hugging Face transformers model ({kind})" if kind else "not a timm config"
        raise NotTimmFormatError(
            f"--model {name}: {where} is {what}, not timm's format (config.json without 'architecture'); "
            "use a timm port of the weights (e.g. hf-hub:timm/vit_small_patch14_dinov2.lvd142m) or convert "
            f"them and {WEIGHTS_ADVICE_SHORT}"
        )
    pretrained = dict(cfg.get("pretrained_cfg") or {k: v for k, v in cfg.items() if k != "architecture"})
    return str(cfg["architecture"]), dict(cfg.get("model_args") or {}), pretrained


def _resolve_local(name: str, path: str) -> Released:
    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        raise NotTimmFormatError(
            f"--model {name}: {config} not found; local-dir: needs a folder written by "
            "timm.models.save_for_hf or `ssl-cyto export --format timm`"
        )
    arch, args, cfg = _parse_config(name, str(config), json.loads(config.read_text(encoding="utf-8")))
    found = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if found is None:
        raise NotTimmFormatError(f"--model {name}: no weights file ({', '.join(WEIGHT_FILES)}) in {folder}")
    return Released(name, arch, args, cfg, None, str(found), sha256_file(found))


# ---- the hub ---------------------------------------------------------------------------------------
def _rank() -> int:
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(key)
        if value not in (None, ""):
            return int(str(value))
    return 0


def _unavailable(name: str, reason: str) -> HubUnavailableError:
    arch = (
        name.partition(".")[0]
        if not name.startswith(("hf-hub:", "hf_hub:", "timm/", "local-dir:"))
        else "ARCH"
    )
    return HubUnavailableError(
        f"--model {name}: the weights cannot be had here ({reason}); ways out: log in (`hf auth login`) "
        "where the repository is gated or private, pre-download them into the cache on a machine with "
        f"internet (python -c \"import timm; timm.create_model('{name}', pretrained=True)\") and point "
        "HF_HOME at that cache, or " + WEIGHTS_ADVICE_SHORT.replace("ARCH", arch)
    )


def _hf_file(name: str, repo: str, filename: str, revision: str | None) -> str | None:
    """The cached path of one file of a hub repository (downloaded if needed); None if the repo lacks it."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    if _rank() != 0:
        return _wait_for_rank0(name, repo, filename, revision)
    cached = try_to_load_from_cache(repo, filename, revision=revision)
    if isinstance(cached, str):
        return cached
    timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or ETAG_TIMEOUT_S)
    try:
        path = hf_hub_download(repo, filename, revision=revision, etag_timeout=timeout)
    except LocalEntryNotFoundError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "HF_HUB_OFFLINE=1 and" if offline else "no connection to the hub and"
        raise _unavailable(name, f"{why} {repo}/{filename} is not in the cache") from exc
    except EntryNotFoundError:
        return None
    except RepositoryNotFoundError as exc:
        raise _unavailable(name, f"repository {repo} not found, private or gated") from exc
    except (OSError, ValueError) as exc:
        raise _unavailable(name, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
    _DOWNLOADED.append(path)
    return path


def _wait_for_rank0(name: str, repo: str, filename: str, revision: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    deadline = time.monotonic() + RANK_WAIT_S
    said = False
    while time.monotonic() < deadline:
        cached = try_to_load_from_cache(repo, filename, revision=revision)
        if isinstance(cached, str):
            return cached
        if cached is not None:  # known not to exist in the repository
            return None
        if not said:
            print(f"ssl-cyto: rank {_rank()} waits for rank 0 to fetch {repo}/{filename}", file=sys.stderr)
            said = True
        time.sleep(2.0)
    raise _unavailable(name, f"rank 0 did not fetch {repo}/{filename} within {RANK_WAIT_S:.0f} s")


def _resolve_hub(name: str, repo_rev: str, weights: bool) -> Released:
    repo, _, revision = repo_rev.partition("@")
    config = _hf_file(name, repo, "config.json", revision or None)
    if config is None:
        raise NotTimmFormatError(
            f"--model {name}: hub repository {repo} has no config.json, so it is not in timm's format "
            f"(e.g. a .pth release); download its weights and {WEIGHTS_ADVICE_SHORT}"
        )
    arch, args, cfg = _parse_config(
        name, f"hub repository {repo}", json.loads(Path(config).read_text("utf-8"))
    )
    commit = Path(config).parent.name
    if not weights:
        return Released(name, arch, args, cfg, commit)
    file = _first_file(name, repo, revision or None)
    return Released(name, arch, args, cfg, commit, file, sha256_file(file))


def _first_file(name: str, repo: str, revision: str | None) -> str:
    from huggingface_hub import try_to_load_from_cache

    for filename in WEIGHT_FILES:  # a cached one first (offline, the cache cannot say what else exists)
        cached = try_to_load_from_cache(repo, filename, revision=revision)
        if isinstance(cached, str):
            return cached
    for filename in WEIGHT_FILES:
        path = _hf_file(name, repo, filename, revision)
        if path is not None:
            return path
    raise NotTimmFormatError(f"--model {name}: hub repository {repo} has none of {', '.join(WEIGHT_FILES)}")


def _resolve_timm_tag(name: str, weights: bool) -> Released:
    """A timm name with its tag: timm keeps these weights in the hub repository ``timm/<name>``, whose
    ``config.json`` gives the architecture and its ``pretrained_cfg``. Torch-free, so a name that cannot
    be had is refused before torch is even imported.

    ``timm.create_model(name, pretrained=True)`` itself fetches only the weights file of a tag, so a
    cache filled that way (the pre-download step docs/training.md shows) has no ``config.json``: there
    the architecture and ``pretrained_cfg`` are timm's own for the tag, and nothing is fetched.
    """
    repo = f"timm/{name}"
    timm_filled = _timm_filled_cache(repo)
    if timm_filled is None:
        return _resolve_hub(name, repo, weights)
    import timm  # only here: the torch-free refusal above stays torch-free

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise BackboneError(f"--model {name}: timm knows no pretrained weights of that name")
    arch = name.partition(".")[0]
    commit = Path(timm_filled).parent.name
    return Released(name, arch, {}, cfg.to_dict(), commit, timm_filled, sha256_file(timm_filled))


def _timm_filled_cache(repo: str) -> str | None:
    """The cached weights file of ``repo`` when the cache holds weights but no ``config.json``."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, "config.json"), str):
        return None
    for filename in WEIGHT_FILES:
        cached = try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return cached
    return None
