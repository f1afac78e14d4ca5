"""Run the app with uvicorn on a socket bound here first, so a taken port is one clear error."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import uvicorn

from ssl_cyto.serve.app import create_app
from ssl_cyto.serve.errors import ServeError
from ssl_cyto.serve.state import load_state
from ssl_cyto.serve.uploads import Limits

__all__ = ["bind", "run_server"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port).

    Raises:
        ServeError: the address is in use or cannot be bound.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(
            f"--host {host}: cannot resolve it ({exc.strerror}); use an address like 127.0.0.1"
        ) from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port} ({exc.strerror}); another server uses it - pass another --port"
        ) from None
    # inherited by accepted connections: answers go out at once instead of waiting for the client's
    # delayed ACK (measured: 44 ms per keep-alive request without it, 3 ms with it)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_server(
    index: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    device: str = "auto",
    threads: int | None = None,
    limits: Limits | None = None,
    token: str | None = None,
    log_level: str = "info",
    model: str | None = None,
) -> None:
    """Load ``index`` once and serve the API and the page until interrupted.

    Args:
        index: embedding folder with ``index.faiss``.
        host: address to bind (127.0.0.1 unless told otherwise).
        port: TCP port (0: a free one; the chosen port is printed).
        device: for embedding uploads.
        threads: torch/FAISS threads and concurrent computations.
        limits: upload caps.
        token: require this token on the API (bearer header or the page's cookie).
        log_level: uvicorn's log level (the access log has method, path and status only).
        model: the backbone the cells were embedded with, when kept outside the embedding folder.

    Raises:
        ServeError: a start-up problem (see :func:`ssl_cyto.serve.state.load_state`, :func:`bind`).
    """
    sock = bind(host, port)
    try:
        state = load_state(index, device=device, threads=threads, model=model)
        app = create_app(state, limits, token)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(
            f"serving {state.n} cells of {state.emb_dir} ({state.index_meta.get('kind')} index, "
            f"{state.model_meta.get('architecture')}, {state.device}, {state.threads} thread(s)) "
            f"at http://{shown}:{bound}/" + (" (token required)" if token else ""),
            file=sys.stderr,
            flush=True,
        )
        config = uvicorn.Config(app, log_level=log_level, access_log=log_level == "debug", lifespan="off")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
