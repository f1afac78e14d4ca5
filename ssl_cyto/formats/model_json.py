"""``model.json``: the description of a backbone folder, and its one reader and writer.

A backbone folder holds ``weights.pt`` (the ``state_dict``, saved by
:func:`ssl_cyto.models.weights.save_backbone`) and ``model.json`` with the keys of
:data:`MODEL_JSON_KEYS`::

    architecture, backbone_kwargs, embed_dim, input_size, mean, std, weights_file, weights_sha256,
    method, config_hash, seed, git_commit, package_versions, created, format_version, source

``weights_sha256`` is the SHA-256 of the bytes of ``weights.pt`` (the saved weights, which ``query``
and ``serve`` compare). ``source`` (format version 2) says where the starting weights came from:
``{"name", "revision", "file_sha256"}`` for released weights (``hf-hub:ORG/NAME``, a timm tag,
``local-dir:PATH``) or a ``--weights`` file, ``null`` for weights trained from random or random
ones. A ``model.json`` without ``format_version`` is version 1 (no ``source``) and reads the same. An embedding folder keeps a copy
of its model's ``model.json`` (possibly with extra keys such as ``random_init`` or ``checkpoint``);
it is written and read through the same two functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ssl_cyto.formats.errors import InputError, MissingInputError, OutputError

MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.pt"
MODEL_JSON_KEYS = (
    "architecture",
    "backbone_kwargs",
    "embed_dim",
    "input_size",
    "mean",
    "std",
    "weights_file",
    "weights_sha256",
    "method",
    "config_hash",
    "seed",
    "git_commit",
    "package_versions",
    "created",
    "format_version",
    "source",
)
#: The version of the ``model.json`` / ``embed.json`` / index metadata layout written now (1: no version key).
MODEL_JSON_VERSION = 2


def model_json_path(path: str | os.PathLike) -> Path:
    """``path`` itself when it names a ``model.json``, else ``path / "model.json"``."""
    p = Path(path)
    return p if p.name == MODEL_JSON else p / MODEL_JSON


def read_model_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read the ``model.json`` of a folder (or the file itself).

    Args:
        path: a backbone or embedding folder, or its ``model.json``.

    Returns:
        The JSON object as a dict (keys as written; no key is required here).

    Raises:
        MissingInputError: there is no ``model.json``.
        InputError: the file is not a JSON object.
    """
    file = model_json_path(path)
    if not file.is_file():
        raise MissingInputError(
            f"{file.parent} is not a backbone folder: {MODEL_JSON} missing (run `ssl-cyto export`)"
        )
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{file}: not valid JSON ({exc}); re-export the backbone") from exc
    if not isinstance(meta, dict):
        raise InputError(f"{file}: expected a JSON object, got {type(meta).__name__}")
    return meta


def write_model_json(out_dir: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``meta`` as ``out_dir/model.json`` (indented, trailing newline); returns the file's path.

    Raises:
        OutputError: the folder cannot be created or the file written.
    """
    out = Path(out_dir)
    file = out / MODEL_JSON
    try:
        out.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {file}: {exc}") from exc
    return file
