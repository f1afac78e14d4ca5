"""The FastAPI app of ``ssl-cyto serve``: the HTTP API and the web page, over one loaded index.

Routes (schema at ``/openapi.json``, interactive docs at ``/docs``); cell ids travel
percent-encoded in the path (they contain ``/``: ``aml-lmu%2FAML-Cytomorphology%2FBAS%2FBAS_0001.tiff``):

* ``POST /api/query?k=&label=&source=&preview=`` - multipart upload with a file field ``image``; the
  answer names the indexed cell it is (``exact_match``) and says why it may mean little (``warnings``)
  when they apply;
* ``GET /api/cells/{cell_id}/neighbours?k=&label=&source=`` - neighbours of an indexed cell, itself
  excluded;
* ``GET /api/cells/{cell_id}/image`` (the original file where reachable, else the shards' copy;
  ``X-Image-Origin`` says which) and ``/thumb``;
* ``GET /api/info``, ``GET /api/health``, ``GET /api/umap`` (compact, gzip), ``POST /api/login``;
* ``GET /`` - the page (``static/``: plain HTML, CSS and JavaScript, no build step, no CDN).

Every answer has a ``scale`` (:mod:`ssl_cyto.serve.similarity_scale`) and, with a map, a ``map``
placement (:mod:`ssl_cyto.serve.map_points`); answers are built by :class:`ssl_cyto.serve.answers.Answerer`
from tables computed once here, and carry a ``Server-Timing`` header (:mod:`ssl_cyto.serve.timing`).

Every refused request is a 4xx JSON body ``{"error", "detail"}``; an unexpected failure is a 500 with
the same shape and no traceback. Queries compute off the event loop (a thread pool), at most
``threads`` at a time (:attr:`ssl_cyto.serve.state.ServeState.compute`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import ssl_cyto
from ssl_cyto.serve.answers import Answerer
from ssl_cyto.serve.auth import bearer, make_guard, set_cookie, token_matches
from ssl_cyto.serve.errors import ApiError
from ssl_cyto.serve.neighbours import K_MAX
from ssl_cyto.serve.schemas import ERROR_RESPONSES, Health, Info, Login, QueryAnswer, UmapPoints
from ssl_cyto.serve.state import ServeState
from ssl_cyto.serve.timing import TimingMiddleware, timing_of
from ssl_cyto.serve.uploads import Limits, body_cap, parse_multipart, read_body

__all__ = ["STATIC_DIR", "create_app"]

STATIC_DIR = Path(__file__).with_name("static")
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary", "description": "a cell image"}
                    },
                }
            }
        },
    }
}
IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}, "description": "the image"},
}
K_QUERY = Query(10, ge=1, le=K_MAX, description=f"neighbours wanted (1..{K_MAX})")
LABEL_QUERY = Query(None, max_length=256, description="only cells with this expert label")
SOURCE_QUERY = Query(None, max_length=256, description="only cells of this source")
PREVIEW_QUERY = Query(
    False, description="add upload.preview, a JPEG data URL, for formats browsers cannot show (TIFF)"
)


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.code, exc.detail)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error(
            500, "internal_error", f"unexpected server error ({type(exc).__name__}); see the server log"
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _cell_row(state: ServeState, cell_id: str) -> int:
    row = state.position.get(cell_id)
    if row is None:
        example = state.cell_ids[0] if state.n else ""
        raise ApiError(
            404,
            "unknown_cell",
            f"no indexed cell has the id {cell_id!r} (ids are '<source>/<path>', e.g. {example!r})",
        )
    return row


def _info(state: ServeState, answerer: Answerer, limits: Limits, token: str | None) -> dict[str, Any]:
    meta, index_meta = state.model_meta, state.index_meta
    classes, sources = state.counts()
    vocabulary = answerer.lookups.vocabulary
    for c in classes:
        c["name"] = vocabulary.get(c["label"], c["name"])
    scale = answerer.scale
    return {
        "model": {
            "architecture": meta.get("architecture"),
            "method": meta.get("method"),
            "embed_dim": meta.get("embed_dim") or index_meta.get("dim"),
            "input_size": meta.get("input_size"),
            "weights_sha256": meta.get("weights_sha256"),
            "random_init": bool(meta.get("random_init", False)),
            "device": state.device,
        },
        "index": {
            "kind": index_meta.get("kind"),
            "params": index_meta.get("params", {}),
            "metric": index_meta.get("metric", "cosine"),
            "n": int(state.index.ntotal),
            "dim": int(state.index.d),
            "folder": state.emb_dir.name,
        },
        "cells": state.n,
        "classes": classes,
        "sources": sources,
        "example_cell": str(state.cell_ids[0]) if state.n else None,
        "images_in_shards": state.images.n_in_shards,
        "images": state.images.origin_summary(state.cell_ids),
        "umap": state.umap is not None,
        "scale": {
            "sample": scale.sample,
            "p1": round(scale.p1, 6) if scale.sample else None,
            "seconds": answerer.scale_seconds,
        },
        "exact_match_by": [
            k for k, v in (("sha256", answerer.matcher.sha256), ("phash", answerer.matcher.phash)) if v
        ]
        + ["similarity"],
        "limits": {"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels, "k_max": K_MAX},
        "auth": token is not None,
    }


def create_app(state: ServeState, limits: Limits | None = None, token: str | None = None) -> FastAPI:
    """The app over a loaded :class:`ServeState`.

    Args:
        state: from :func:`ssl_cyto.serve.state.load_state`.
        limits: upload caps (default :class:`Limits`).
        token: if set, the API needs it (bearer header or the page's cookie).
    """
    limits = limits or Limits()
    guard = make_guard(token)
    answerer = Answerer(state)
    info = _info(state, answerer, limits, token)

    async def require_token(  # async: a constant-time compare needs no worker thread
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
    ) -> None:
        guard(request, credentials)

    app = FastAPI(
        title="ssl-cyto serve",
        version=ssl_cyto.__version__,
        description="Similar-cell search over one embedding folder and its FAISS index.",
    )
    _install_error_handlers(app)
    app.add_middleware(TimingMiddleware)
    deps = [Depends(require_token)] if token is not None else []
    api = APIRouter(prefix="/api", dependencies=deps, responses=ERROR_RESPONSES)
    app.include_router(_open_routes(state, token))
    _add_query_routes(api, state, answerer, limits, info)
    _add_cell_routes(api, state)
    app.include_router(api)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def _open_routes(state: ServeState, token: str | None) -> APIRouter:
    """The routes that need no token: liveness and the page's login."""
    open_api = APIRouter(prefix="/api", responses=ERROR_RESPONSES)

    @open_api.get("/health", response_model=Health)
    def health() -> dict[str, Any]:
        """Liveness: answers while the server runs (no token needed; reveals only the cell count)."""
        return {"status": "ok", "cells": state.n}

    @open_api.post("/login", status_code=204, response_class=Response)
    def login(body: Login, response: Response) -> Response:
        """Check the page's token and remember it in an HttpOnly cookie."""
        if token is None:
            return Response(status_code=204)
        if not token_matches(body.token, token):
            raise ApiError(
                401, "wrong_token", "the token is wrong; use the --token / SSL_CYTO_TOKEN of the server"
            )
        out = Response(status_code=204)
        set_cookie(out, token)
        return out

    return open_api


def _add_query_routes(
    api: APIRouter, state: ServeState, answerer: Answerer, limits: Limits, info: dict[str, Any]
) -> None:
    """Info, the map, and the two searches (an upload, an indexed cell)."""

    @api.get("/info", response_model=Info)
    def get_info() -> dict[str, Any]:
        """The model, the index, the cell count, and the classes and sources with counts."""
        return info

    @api.get("/umap", response_model=UmapPoints)
    def get_umap(request: Request) -> Response:
        """The 2-D UMAP of the cells (from ``ssl-cyto umap``; compact, thinned when large), or a hint."""
        headers = {"Cache-Control": "private, max-age=3600", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(answerer.umap_gzip, media_type="application/json", headers=headers)
        return Response(answerer.umap_plain, media_type="application/json", headers=headers)

    @api.post("/query", response_model=QueryAnswer, openapi_extra=UPLOAD_BODY)
    async def query_upload(
        request: Request,
        k: int = K_QUERY,
        label: str | None = LABEL_QUERY,
        source: str | None = SOURCE_QUERY,
        preview: bool = PREVIEW_QUERY,
    ) -> Response:
        """Neighbours of an uploaded cell image (multipart field ``image``), embedded with the index's model."""
        body = await read_body(request.stream(), request.headers.get("content-length"), body_cap(limits))
        parts = parse_multipart(body, request.headers.get("content-type"))
        part = parts.get("image")
        if part is None:
            raise ApiError(400, "missing_image", "the form has no file field named 'image'")
        answerer.lookups.filter_mask(label, source)  # refuse a bad filter before decoding anything
        timing = timing_of(request)
        answer = await run_in_threadpool(
            answerer.for_upload, part.data, limits, k, label, source, timing, preview
        )
        return JSONResponse(answer)

    @api.get("/cells/{cell_id:path}/neighbours", response_model=QueryAnswer)
    def cell_neighbours(
        request: Request,
        cell_id: str,
        k: int = K_QUERY,
        label: str | None = LABEL_QUERY,
        source: str | None = SOURCE_QUERY,
    ) -> Response:
        """Neighbours of an indexed cell (its stored vector), the cell itself excluded."""
        row = _cell_row(state, cell_id)
        return JSONResponse(answerer.for_cell(row, k, label, source, timing_of(request)))


def _add_cell_routes(api: APIRouter, state: ServeState) -> None:
    """A cell's image at its stored size and its thumbnail."""

    @api.get("/cells/{cell_id:path}/image", response_class=Response, responses=IMAGE_RESPONSES)
    def cell_image(cell_id: str) -> Response:
        """The cell's image at its stored size: the original file where this server reaches it, else the
        shards' copy (JPEG/PNG/WEBP as stored; TIFF and BMP converted to PNG). The header
        ``X-Image-Origin`` says which: ``original`` or ``shard``."""
        _cell_row(state, cell_id)
        data, media, origin = state.images.image(cell_id)
        headers = {"Cache-Control": "private, max-age=3600", "X-Image-Origin": origin}
        return Response(data, media_type=media, headers=headers)

    @api.get("/cells/{cell_id:path}/thumb", response_class=Response, responses=IMAGE_RESPONSES)
    def cell_thumb(cell_id: str) -> Response:
        """A JPEG thumbnail of the cell (at most 128 pixels a side)."""
        _cell_row(state, cell_id)
        return Response(
            state.images.thumb(cell_id),
            media_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=3600"},
        )
