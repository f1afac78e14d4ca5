"""Load test of ``ssl-cyto serve`` on the loopback address, beside the same query through the CLI.

Index: 190,000 synthetic vectors with a real model. A seeded random-weight ``tiny_cnn`` embeds a
few generated AML-LMU cells (:func:`ssl_cyto.data.synth.synthesize`, :func:`ssl_cyto.embedding.runner.embed`);
their vectors are tiled to ``--n`` rows with Gaussian noise (norm ``--noise`` x the median
nearest-neighbour distance) and written as one embedding folder with the model's backbone, so
uploads are embedded by the very model whose sha256 the index records. Two indexes over it: ``flat``
(exact) and ``hnsw`` (the defaults of ``ssl_cyto.retrieval``).

For each index the server runs as ``python -m ssl_cyto serve --threads T`` in its own process; an
asyncio client (one keep-alive HTTP/1.1 connection per request in flight, :class:`RawConnection`;
``--client httpx`` for httpx's AsyncClient, which costs more CPU per request than the server on
these shared cores) sends a bounded number of requests (``--requests`` per setting, at most
``--seconds``) at each ``--concurrency`` (default 1 and 16), for cell-id queries (``GET /neighbours?k=10`` of random
cells) and image uploads (``POST /api/query?k=10`` of a 400x400 RGBA TIFF), and records requests/s,
p50/p95/p99 latency and errors. The CLI column is ``python -m ssl_cyto query --index ... --json``
for the same query (a fresh process: import, load index and model, answer), median of 3 runs.

The client and the server share the machine's cores, so the figures are a lower bound for a
dedicated server. Run (writes ``results/benchmarks/serve.json`` and ``serve.md``)::

    .venv/bin/python benchmarks/serve.py
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd

from ssl_cyto.data.synth import synthesize
from ssl_cyto.embedding.runner import embed
from ssl_cyto.formats.embeddings import read_embedding_folder, write_embedding_folder
from ssl_cyto.formats.provenance import hardware_summary
from ssl_cyto.retrieval.index_io import build_index, resolve_index_path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks"


def log(msg: str) -> None:
    print(f"[serve-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_folder(work: Path, n: int, noise: float, seed: int) -> tuple[Path, Path]:
    """The 190k-row embedding folder (flat index inside, hnsw in ``hnsw/``) and a query image."""
    cells_dir, small = work / "cells", work / "emb_small"
    if not (small / "embeddings.npy").exists():
        synthesize(cells_dir, layout="aml-lmu", per_class=4, seed=seed)
        embed("tiny_cnn", cells_dir, small, progress=False, seed=seed)
    base = read_embedding_folder(small, mmap=False)
    big = work / f"emb_{n}"
    if not (big / "index.faiss").exists():
        rng = np.random.default_rng(seed)
        real = base.vectors.astype(np.float32)
        real /= np.linalg.norm(real, axis=1, keepdims=True)
        d = np.sqrt(np.maximum(2 - 2 * real @ real.T, 0)) + np.eye(len(real)) * 9
        scale = noise * float(np.median(d.min(axis=1))) / np.sqrt(real.shape[1])
        rows = np.arange(n) % len(real)
        vectors = real[rows] + rng.normal(0, scale, size=(n, real.shape[1])).astype(np.float32)
        cells = base.cells.iloc[rows].reset_index(drop=True).copy()
        cells["cell_id"] = [f"{c}~{i:06d}" for i, c in enumerate(cells["cell_id"])]
        embed_meta = dict(base.embed, synthetic=f"{len(real)} real tiny_cnn vectors tiled to {n} with noise")
        write_embedding_folder(big, vectors, cells, base.model, embed_meta)
        shutil.copytree(small / "backbone", big / "backbone", dirs_exist_ok=True)
        log(f"building flat and hnsw indexes over {n} vectors")
        build_index(big, "flat", progress=False)
        build_index(big, "hnsw", out=big / "hnsw" / "index.faiss", progress=False)
    image = Path(base.cells["root"].iloc[0]) / base.cells["path"].iloc[0]
    return big, image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(index: Path, threads: int) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "ssl_cyto",
        "serve",
        "--index",
        str(index),
        "--port",
        str(port),
        "--threads",
        str(threads),
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}: {shlex.join(cmd)}")
        try:
            if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.HTTPError:
            time.sleep(0.2)


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


def cli_query(index: Path, args: list[str], runs: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "ssl_cyto", "query", "--index", str(index), "-k", "10", "--json", *args]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)}
        )
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{shlex.join(cmd)} failed: {r.stderr.strip()[-500:]}")
    return {
        "seconds_median": round(statistics.median(times), 2) if times else None,
        "runs": runs,
        "command": shlex.join(cmd[1:]).replace(str(ROOT) + "/", ""),  # repository-relative paths
    }


def reading(indexes: dict[str, Any]) -> str:
    """A data-driven summary: errors, and the best throughput and single-request latency per index."""
    errors = sum(r["errors"] for block in indexes.values() for r in block["load"])
    parts = [f"{errors} failed requests in all rows."]
    for kind, block in indexes.items():
        for query in ("cell", "image"):
            rows = [r for r in block["load"] if r["query"] == query]
            if not rows:
                continue
            best = max(rows, key=lambda r: r["req_per_s"])
            one = min(rows, key=lambda r: r["concurrency"])
            parts.append(
                f"{kind}/{query}: p50 {one['p50_ms']} ms at concurrency {one['concurrency']}, "
                f"best {best['req_per_s']} req/s (concurrency {best['concurrency']}); "
                f"p99 {best['p99_ms']} ms there; server time outside the search {best['server_outside_ms_mean']} ms "
                "per request on average."
            )
    parts.append(
        "Beyond `--threads` concurrent queries, requests queue: throughput is bound by the cores and latency grows "
        "with the queue. The CLI pays process start, imports and loading the index and model on every query; the "
        "server pays that once."
    )
    return " ".join(parts)


def render(result: dict) -> str:
    lines = [
        "```",
        result["command"],
        "```",
        "",
        f"- **Data:** {result['data']}",
        f"- **Hardware:** {result['hardware']}",
        f"- **Date:** {result['date']}",
        "",
        "# `ssl-cyto serve` under load",
        "",
        "## Method",
        "",
        result["method"],
        "",
    ]
    for kind in result["indexes"]:
        block = result["indexes"][kind]
        lines += [
            f"## {kind} index ({block['params']}), {result['n']:,} vectors",
            "",
            f"Server start-up (process start to first answer of /api/health): {block['startup_s']:.1f} s.",
            "",
            "| query | concurrency | requests | errors | req/s | p50 ms | p95 ms | p99 ms "
            "| server search ms (mean) | server outside ms (mean / p99) | of which answer ms (mean) "
            "| server CPU ms / request | client CPU ms / request | load avg |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in block["load"]:
            lines.append(
                f"| {r['query']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['req_per_s']} | "
                f"{r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r.get('server_search_ms_mean')} | "
                f"{r.get('server_outside_ms_mean')} / {r.get('server_outside_ms_p99')} | "
                f"{r.get('server_answer_ms_mean')} | {r.get('server_cpu_ms_per_request')} | "
                f"{r.get('client_cpu_ms_per_request')} | {r.get('loadavg_1min')} |"
            )
        cli = block["cli"]
        lines += [
            "",
            "Same query through the CLI (new process each time, median of "
            f"{cli['cell']['runs']} runs): cell id {cli['cell']['seconds_median']} s, "
            f"image {cli['image']['seconds_median']} s."
            if cli["cell"]["runs"]
            else "Same query through the CLI: not run (`--cli-runs 0`).",
            "",
        ]
    lines += ["## Reading", "", result["reading"], ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=190_000)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2, help="server --threads")
    parser.add_argument("--requests", type=int, default=2000, help="requests per setting (bound)")
    parser.add_argument("--seconds", type=float, default=120, help="time per setting (bound)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--kinds", nargs="+", default=["flat", "hnsw"], choices=["flat", "hnsw"])
    parser.add_argument("--queries", nargs="+", default=["cell", "image"], choices=["cell", "image"])
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: keep-alive asyncio connections (light) or httpx.AsyncClient",
    )
    parser.add_argument("--work", type=Path, default=ROOT / "cache" / "serve_bench")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    big, image_path = make_folder(args.work, args.n, args.noise, seed=0)
    image = image_path.read_bytes()
    ids = (
        pd.read_parquet(big / "cells.parquet", columns=["cell_id"])["cell_id"]
        .sample(2000, random_state=0)
        .tolist()
    )
    indexes: dict[str, Any] = {}
    for kind, index in (("flat", big), ("hnsw", big / "hnsw" / "index.faiss")):
        if kind not in args.kinds:
            continue
        meta = json.loads(resolve_index_path(index)[1].read_text())
        log(f"{kind}: starting the server")
        proc, url, startup = start_server(index, args.threads)
        rows = []
        try:
            for query in args.queries:
                for c in args.concurrency:
                    log(f"{kind}: {query} x concurrency {c}")
                    rows.append(
                        asyncio.run(
                            load(
                                url, query, c, args.requests, args.seconds, ids, image, proc.pid, args.client
                            )
                        )
                    )
                    log(f"  -> {rows[-1]}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        log(f"{kind}: CLI")
        cli = {
            "cell": cli_query(index, ["--cell-id", ids[0]], args.cli_runs, args.threads),
            "image": cli_query(index, [str(image_path)], args.cli_runs, args.threads),
        }
        indexes[kind] = {
            "params": ", ".join(f"{k}={v}" for k, v in meta.get("params", {}).items()) or "exact",
            "startup_s": round(startup, 1),
            "load": rows,
            "cli": cli,
        }
    load_end = os.getloadavg()[0]
    result = {
        "command": shlex.join(["python", "benchmarks/serve.py", *sys.argv[1:]]),
        "n": args.n,
        "data": f"{args.n:,} synthetic 256-d vectors: the seeded random-weight tiny_cnn embeddings of 60 generated "
        f"AML-LMU cells, tiled with Gaussian noise (x{args.noise} median NN distance); uploads are embedded "
        "by that tiny_cnn (96 px input)",
        "hardware": hardware_summary(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": (
            f"Server: `ssl-cyto serve --threads {args.threads}` (uvicorn, one process) on 127.0.0.1; client: "
            + (
                "asyncio, one keep-alive HTTP/1.1 connection per request in flight"
                if args.client == "raw"
                else "httpx AsyncClient"
            )
            + f" in another process on the same machine, `concurrency` requests in flight, at most "
            f"{args.requests} requests or {args.seconds:.0f} s per row. `cell`: GET "
            "/api/cells/{id}/neighbours?k=10 of random indexed cells; `image`: POST /api/query?k=10 uploading a "
            f"{len(image):,}-byte 400x400 RGBA TIFF (decode, embed, search). Latency is per request, "
            "client-side. Server-side phases come from each answer's `Server-Timing` header (measured in the "
            "server from the request's arrival to the response's start): `search` is the index search, and "
            "`outside` is that whole time less queueing for a compute slot, decoding + embedding an upload and "
            "the search, i.e. routing, parameter validation, thread hand-over, waiting for a CPU on this shared "
            "machine, and `answer`: what the answer module does after the search (exact match, warnings, scale, "
            "map placement, the neighbour rows). `server CPU ms / request`: the server process's user + system "
            "CPU time over the row (from /proc) divided by its requests - its own work, unlike wall times, "
            "whatever else runs on the machine; `client CPU ms / request` the same for the load generator. "
            "`load avg` is the machine's 1-minute load average at the end of each row (other jobs share it). "
            "An error is any answer but 200 with 10 neighbours. The machine has 2 CPU cores shared "
            "by client, server and other work (1-minute load average "
            f"{load_start:.1f} at the start, {load_end:.1f} at the end), so the figures are pessimistic."
        ),
        "reading": reading(indexes),
        "indexes": indexes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "serve.md").write_text(render(result), encoding="utf-8")
    log(f"wrote {args.out / 'serve.json'} and serve.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
