"""The generated-cells cache behind ``synth:<layout>[:<per_class>]`` data strings."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ssl_cyto.data.synth.layouts import GENERATOR_VERSION
from ssl_cyto.data.synth.writer import synthesize
from ssl_cyto.formats.errors import OutputError


def cache_dir(layout: str, per_class: int, seed: int = 0) -> Path:
    """Where :func:`ensure_cached` keeps a generated dataset."""
    base = os.environ.get("SSL_CYTO_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "ssl_cyto"
    return root / "synth" / f"{layout}-{per_class}-{seed}"


def ensure_cached(layout: str, per_class: int = 50, seed: int = 0) -> Path:
    """Generate a dataset once into the cache and reuse it afterwards.

    The cache folder is ``$SSL_CYTO_CACHE/synth/<layout>-<per_class>-<seed>`` (or under
    ``~/.cache/ssl_cyto``). A marker file records the generator version; a cache written by another
    version is regenerated. Generation goes to a temporary folder renamed into place, so concurrent
    callers never see a half-written dataset.

    Returns:
        The PATH to give to the matching source.
    """
    target = cache_dir(layout, per_class, seed)
    marker = target / ".complete"
    if marker.exists() and marker.read_text().strip() == GENERATOR_VERSION:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{target.parent}: cannot create the generated-cells cache ({exc}); set SSL_CYTO_CACHE to a "
            "writable folder"
        ) from exc
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    synthesize(tmp, layout, per_class, seed)
    (tmp / ".complete").write_text(GENERATOR_VERSION + "\n")
    if target.exists():
        if (target / ".complete").exists() and (
            target / ".complete"
        ).read_text().strip() == GENERATOR_VERSION:
            shutil.rmtree(tmp)  # another process finished first
            return target
        shutil.rmtree(target)
    try:
        os.replace(tmp, target)
    except OSError:
        if not marker.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return target
