"""Where a request's time goes, measured in the server and sent as a ``Server-Timing`` header.

:class:`TimingMiddleware` (pure ASGI, no per-request task or body copy) times each request from the
moment the app receives it until its response starts, and puts a ``timing`` dict into the request
scope; a query fills it with its own phases (milliseconds: ``queue``, waiting for a compute slot;
``embed``, decoding and embedding an upload; ``search``, the index search). The header reads
``queue;dur=0.012, search;dur=1.301, app;dur=2.118``; ``app - queue - embed - search`` is the time
spent outside the computation (routing, validation, building the JSON) that ``benchmarks/serve.py``
reports.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["TimingMiddleware", "timing_of"]


def timing_of(request: Request) -> dict[str, float]:
    """The request's timing dict (a fresh one when the middleware is not installed)."""
    timing = request.scope.get("state", {}).get("timing")
    return timing if isinstance(timing, dict) else {}


class TimingMiddleware:
    """Adds ``Server-Timing`` to every HTTP response whose handler recorded phases."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        timing: dict[str, float] = {}
        scope.setdefault("state", {})["timing"] = timing

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start" and timing:
                total = (time.perf_counter() - start) * 1000.0
                value = ", ".join([f"{k};dur={v:.3f}" for k, v in timing.items()] + [f"app;dur={total:.3f}"])
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"server-timing", value.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_timed)
