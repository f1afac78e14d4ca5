"""benchmarks/serve_load.py, the load generator of benchmarks/serve.py: the light keep-alive client against a canned server (its
requests, its parsing of answers and ``Server-Timing``, errors counted, one connection per slot)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("serve_load", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _run(bench, kind: str) -> tuple[dict, list[bytes], int]:  # type: ignore[no-untyped-def]
    seen: list[bytes] = []
    connections = 0
    ok = json.dumps({"neighbours": [{}] * 10}).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
            body = await reader.readexactly(int(length[0].split(b":")[1])) if length else b""
            seen.append(head + body)
            answer = ok if len(seen) % 5 else b'{"error": "x"}'  # every fifth answer is refused
            status = b"200 OK" if len(seen) % 5 else b"400 Bad Request"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
                b"server-timing: queue;dur=0.5, search;dur=1.000, app;dur=2.000\r\n"
                b"content-length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        row = await bench.load(f"http://127.0.0.1:{port}", kind, 3, 20, 30, ["a/b c.png"], b"IMG", None)
    return row, seen, connections


def test_the_light_client_counts_answers_and_server_phases() -> None:
    bench = _bench()
    row, seen, connections = asyncio.run(_run(bench, "cell"))
    assert row["requests"] == 20 and row["errors"] == 4 and row["error_kinds"] == {"HTTP 400": 4}
    assert connections == 3  # keep-alive: one connection per request in flight
    assert seen[0].startswith(b"GET /api/cells/a%2Fb%20c.png/neighbours?k=10 HTTP/1.1\r\n")
    assert row["server_outside_ms_mean"] == 0.5 and row["server_search_ms_mean"] == 1.0
    assert row["client_cpu_ms_per_request"] >= 0
    row, seen, _ = asyncio.run(_run(bench, "image"))
    assert row["errors"] == 4 and seen[0].startswith(b"POST /api/query?k=10 HTTP/1.1\r\n")
    assert b'name="image"; filename="cell.tiff"' in seen[0] and b"\r\n\r\nIMG\r\n--" in seen[0]
