"""The load generator of ``benchmarks/serve.py``: a bounded number of requests at a fixed concurrency
against a running ``ssl-cyto serve``, with latency percentiles, errors by kind, the server's own phases
(its ``Server-Timing`` header) and the CPU the server and this client used per request.

The default client is :class:`RawConnection` (one keep-alive HTTP/1.1 connection per request in flight
on asyncio streams); ``client="httpx"`` uses httpx's AsyncClient, which costs about as much CPU per
request as the server's own work on the same cores (measured: ``results/benchmarks/serve.md``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np


def server_phases(header: str | None) -> dict[str, float]:
    """``{"queue": ms, "search": ms, "app": ms, ...}`` from the server's ``Server-Timing`` header."""
    out: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name and dur:
            out[name] = float(dur)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/PID/stat``; Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


BOUNDARY = "ssl-cyto-bench-boundary"


def multipart(image: bytes) -> bytes:
    """The body of ``POST /api/query`` with ``image`` as the file field ``image``."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="cell.tiff"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode("ascii")
    return head + image + f"\r\n--{BOUNDARY}--\r\n".encode("ascii")


class RawConnection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a load generator far lighter on the CPU
    than httpx's AsyncClient (which costs about as much CPU per request as the server's own work, on
    the same cores). Answers must carry ``Content-Length`` (the server's JSON answers do)."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", ctype: str = ""
    ) -> tuple[int, dict, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body:
            head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode("ascii") + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        data = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


async def load(
    url: str,
    kind: str,
    concurrency: int,
    total: int,
    seconds: float,
    ids: list[str],
    image: bytes,
    server_pid: int | None = None,
    client: str = "raw",
) -> dict:
    latencies: list[float] = []
    outside: list[float] = []  # server-side ms outside queueing, embedding and searching
    searching: list[float] = []
    answering: list[float] = []  # the answer module's own work after the search (scale, match, map, rows)
    errors: dict[str, int] = {}
    sent = 0
    rng = random.Random(concurrency)
    deadline = time.perf_counter() + seconds
    body = multipart(image)
    ctype = f"multipart/form-data; boundary={BOUNDARY}"

    async def one(http: Any) -> tuple[int, dict, bytes]:
        if kind == "cell":
            path = f"/api/cells/{quote(rng.choice(ids), safe='')}/neighbours?k=10"
            if isinstance(http, RawConnection):
                return await http.request("GET", path)
            r = await http.get(path)
        else:
            if isinstance(http, RawConnection):
                return await http.request("POST", "/api/query?k=10", body, ctype)
            r = await http.post("/api/query?k=10", content=body, headers={"content-type": ctype})
        return r.status_code, {"server-timing": r.headers.get("server-timing")}, r.content

    async def worker(http: Any) -> None:
        nonlocal sent
        while sent < total and time.perf_counter() < deadline:
            sent += 1
            t0 = time.perf_counter()
            try:
                status, headers, data = await one(http)
                ok = status == 200 and len(json.loads(data)["neighbours"]) == 10
                key = "ok" if ok else f"HTTP {status}"
                phases = server_phases(headers.get("server-timing"))
                if ok and "app" in phases:
                    inner = sum(phases.get(p, 0.0) for p in ("queue", "embed", "search"))
                    outside.append(phases["app"] - inner)
                    searching.append(phases.get("search", 0.0))
                    answering.append(phases.get("answer", 0.0))
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                key = type(exc).__name__
                if isinstance(http, RawConnection):
                    await http.close()
            if key == "ok":
                latencies.append(time.perf_counter() - t0)
            else:
                errors[key] = errors.get(key, 0) + 1

    cpu0 = cpu_seconds(server_pid) if server_pid else None
    t0, client_cpu0 = time.perf_counter(), time.process_time()
    if client == "raw":  # one keep-alive connection per request in flight
        conns = [RawConnection(url) for _ in range(concurrency)]
        await asyncio.gather(*(worker(c) for c in conns))
        for c in conns:
            await c.close()
    else:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
            await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    wall, client_cpu = time.perf_counter() - t0, time.process_time() - client_cpu0
    cpu = None if cpu0 is None or server_pid is None else cpu_seconds(server_pid) - cpu0
    ms = np.asarray(latencies) * 1000
    pct = (lambda q: round(float(np.percentile(ms, q)), 1)) if len(ms) else (lambda q: None)
    out_ms = np.asarray(outside) if outside else np.zeros(1)
    return {
        "query": kind,
        "concurrency": concurrency,
        "requests": len(latencies) + sum(errors.values()),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "req_per_s": round(len(latencies) / wall, 1),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "server_search_ms_mean": round(float(np.mean(searching)), 3) if searching else None,
        "server_outside_ms_mean": round(float(out_ms.mean()), 3),
        "server_outside_ms_p99": round(float(np.percentile(out_ms, 99)), 3),
        "server_answer_ms_mean": round(float(np.mean(answering)), 3) if answering else None,
        # the server process's CPU time per request: its work, whatever else runs on the machine
        "server_cpu_ms_per_request": None if cpu is None else round(1000 * cpu / max(1, len(latencies)), 2),
        # the load generator's own CPU time per request (it shares the cores with the server)
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(1, len(latencies)), 2),
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }
