"""``ssl-cyto serve`` start-up: the port, the CLI's one-line errors, and a real server under concurrent load."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from ssl_cyto.serve.errors import ServeError
from ssl_cyto.serve.server import bind
from tests.serve.conftest import running_server


def serve_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ssl_cyto", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_port_taken_is_a_serve_error() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ServeError, match="--port"):
            bind("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["no-index", "port-taken"])
def test_cli_startup_problems_are_one_line(problem: str, serve_emb: Path, tmp_path: Path) -> None:
    if problem == "no-index":
        r = serve_cli("--index", str(tmp_path / "missing"), "--port", "0")
    else:
        with bind("127.0.0.1", 0) as sock:
            r = serve_cli("--index", str(serve_emb), "--port", str(sock.getsockname()[1]), "--threads", "1")
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr


@pytest.mark.slow
def test_real_server_answers_concurrent_requests(serve_emb: Path, a_cell: tuple[str, Path]) -> None:
    with running_server(serve_emb, token="tok") as url:
        headers = {"Authorization": "Bearer tok"}
        assert httpx.get(url + "/api/info").status_code == 401
        cell = quote(a_cell[0], safe="")
        data = a_cell[1].read_bytes()

        def one(i: int) -> int:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                if i % 2:
                    return c.post("/api/query?k=5", files={"image": ("c", data)}).status_code
                return c.get(f"/api/cells/{cell}/neighbours?k=5").status_code

        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(one, range(48)))
        assert codes == [200] * 48
        assert httpx.get(url + "/api/health", timeout=5).status_code == 200
