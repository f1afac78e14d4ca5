"""Fixtures of the serve tests: real embedding folders and indexes built with the library.

``serve_emb``: the generated AML-LMU cells (RGBA TIFFs) embedded with a seeded random ``tiny_cnn``
from their folder, flat index. ``shard_emb``: the generated BM-MLL cells packed into shards,
embedded from the shards, HNSW index (images are then served from the tars).
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ssl_cyto.data.packing import pack
from ssl_cyto.embedding.runner import embed
from ssl_cyto.retrieval.index_io import build_index
from ssl_cyto.serve.app import create_app
from ssl_cyto.serve.state import ServeState, load_state
from ssl_cyto.serve.uploads import Limits

TOKEN = "s3cret-token"
SMALL_LIMITS = Limits(max_bytes=2_000_000, max_pixels=4_000_000)


@pytest.fixture(scope="session")
def serve_emb(synth_aml: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "emb"
    embed("tiny_cnn", synth_aml, out, progress=False)
    build_index(out, "flat", progress=False)
    return out


@pytest.fixture(scope="session")
def shard_emb(synth_bm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("serve_shards")
    pack(synth_bm, base / "shards", shard_size=20, workers=1, progress=False)
    out = base / "emb"
    embed("tiny_cnn", base / "shards", out, progress=False)
    build_index(out, "hnsw", progress=False)
    return out


@pytest.fixture(scope="session")
def state(serve_emb: Path) -> ServeState:
    return load_state(serve_emb, device="cpu", threads=1)


@pytest.fixture(scope="session")
def client(state: ServeState) -> Iterator[TestClient]:
    with TestClient(create_app(state, SMALL_LIMITS)) as c:
        yield c


@pytest.fixture(scope="session")
def token_client(state: ServeState) -> Iterator[TestClient]:
    with TestClient(create_app(state, SMALL_LIMITS, token=TOKEN)) as c:
        yield c


@pytest.fixture(scope="session")
def a_cell(state: ServeState) -> tuple[str, Path]:
    """An indexed cell id and its file (an RGBA TIFF of the AML-LMU layout)."""
    cell_id = str(state.cell_ids[5])
    source, root, path = str(state.sources[5]), str(state.roots[5]), str(state.paths[5])
    assert source == "aml-lmu"
    return cell_id, Path(root) / path


def png_16bit(rgb: Image.Image) -> bytes:
    """A 16-bit grey-scale PNG of ``rgb`` (mode I;16), as some microscopes export."""
    grey = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")
    return buf.getvalue()


def huge_png(width: int = 10_000, height: int = 10_000) -> bytes:
    """A complete, valid 1-bit PNG of ``width`` x ``height`` (12.5 MB raw, a few kB compressed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    raw = (b"\x00" + b"\x00" * ((width + 7) // 8)) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def tiff_declaring(width: int = 20_000, height: int = 20_000) -> bytes:
    """A little-endian TIFF header whose IFD declares ``width`` x ``height`` RGB, with no pixel data."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 2),  # Photometric: RGB
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, width * height * 3),  # StripByteCounts
    ]
    ifd = len(entries).to_bytes(2, "little")
    for tag, typ, count, value in entries:
        ifd += tag.to_bytes(2, "little") + typ.to_bytes(2, "little") + count.to_bytes(4, "little")
        ifd += value.to_bytes(4, "little") if typ == 4 else value.to_bytes(2, "little") + b"\x00\x00"
    ifd += (0).to_bytes(4, "little")
    header = b"II*\x00" + (8 + 16).to_bytes(4, "little")
    return header + b"\x00" * 16 + ifd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(emb: Path, token: str | None = None, timeout: float = 120) -> Iterator[str]:
    """``ssl-cyto serve`` in a subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if token:
        env["SSL_CYTO_TOKEN"] = token
    cmd = [
        sys.executable,
        "-m",
        "ssl_cyto",
        "serve",
        "--index",
        str(emb),
        "--port",
        str(port),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > end:
                raise AssertionError("the server did not start in time")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRE_BROWSER = "SSL_CYTO_REQUIRE_BROWSER"


def require_chromium() -> None:
    """Skip without Debian's chromium + chromedriver; fail instead where ``SSL_CYTO_REQUIRE_BROWSER=1``
    (``.ci/run`` sets it, so CI cannot pass without running the page's tests)."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    why = (
        "needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver): "
        "apt-get install chromium chromium-driver (make browser does)"
    )
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{REQUIRE_BROWSER}=1 but the browser is missing: {why}", pytrace=False)
    pytest.skip(why)


def start_browser(user_data: str, size: str = "1400,1000"):
    """Headless Chromium through selenium with a throw-away profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={user_data}",
        f"--window-size={size}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def with_fake_umap(src: Path, dest: Path, seed: int = 0) -> Path:
    """A copy of the embedding folder ``src`` with a seeded random ``umap/umap.parquet`` (the page's map)."""
    import shutil

    import pandas as pd

    shutil.copytree(src, dest)
    cells = pd.read_parquet(dest / "cells.parquet", columns=["cell_id"])
    rng = np.random.default_rng(seed)
    (dest / "umap").mkdir()
    xy = rng.normal(size=(len(cells), 2))
    pd.DataFrame({"cell_id": cells["cell_id"], "x": xy[:, 0], "y": xy[:, 1]}).to_parquet(
        dest / "umap" / "umap.parquet"
    )
    return dest
