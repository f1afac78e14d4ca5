"""Load test of ``ssl-cyto serve`` on the loopback address, beside the same query through the CLI.

Index: 190,000 synthetic vectors with a real model. A seeded random-weight ``tiny_cnn`` embeds a
few generated AML-LMU cells (:func:`ssl_cyto.data.synth.synthesize`, :func:`ssl_cyto.embedding.runner.embed`);
their vectors are tiled to ``--n`` rows with Gaussian noise (norm ``--noise`` x the median
nearest-neighbour distance) and written as one embedding folder with the model's backbone, so
uploads are embedded by the very model whose sha256 the index records. Two indexes over it: ``flat``
(exact) and ``hnsw`` (the defaults of ``ssl_cyto.retrieval``).

For each index the server runs as ``python -m ssl_cyto serve --threads T`` in its own process; an
asyncio client (``benchmarks/serve_load.py``: one keep-alive HTTP/1.1 connection per request in flight;
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
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from ssl_cyto.data.synth import synthesize
from ssl_cyto.embedding.runner import embed
from ssl_cyto.formats.embeddings import read_embedding_folder, write_embedding_folder
from ssl_cyto.formats.provenance import hardware_summary
from ssl_cyto.retrieval.index_io import build_index, resolve_index_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import load  # noqa: E402  (this script's sibling, benchmarks/serve_load.py)

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

    # an absolute scratch folder is written $WORK, as scale.py does: no machine path in the records
    def scrub(text: str) -> str:
        return text.replace(str(args.work), "$WORK") if args.work.is_absolute() else text

    (args.out / "serve.json").write_text(scrub(json.dumps(result, indent=2)) + "\n", encoding="utf-8")
    (args.out / "serve.md").write_text(scrub(render(result)), encoding="utf-8")
    log(f"wrote {args.out / 'serve.json'} and serve.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
