"""Optional token: a bearer header on the API, a cookie for the web page.

Started with ``--token`` (or ``SSL_CYTO_TOKEN``), every ``/api/*`` route except ``/api/health`` and
``/api/login`` needs either ``Authorization: Bearer <token>`` or the cookie that ``POST /api/login``
sets after the page's token prompt (``HttpOnly``, ``SameSite=Strict``). Tokens are compared in
constant time (:func:`hmac.compare_digest`). Without a token the API is open: the server binds to
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ssl_cyto.serve.errors import ApiError

__all__ = ["COOKIE", "bearer", "make_guard", "set_cookie", "token_matches"]

COOKIE = "ssl_cyto_token"
bearer = HTTPBearer(auto_error=False, description="the --token / SSL_CYTO_TOKEN the server was started with")


def token_matches(given: str | None, token: str) -> bool:
    """True if ``given`` equals ``token`` (constant time)."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def make_guard(token: str | None) -> Callable[[Request, HTTPAuthorizationCredentials | None], None]:
    """A FastAPI dependency that lets a request through only with the right token (always, if None)."""

    def guard(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials is not None else request.cookies.get(COOKIE)
        if given is None:
            raise ApiError(
                401,
                "missing_token",
                "this server needs a token: send 'Authorization: Bearer <token>' or log in on the page",
            )
        if not token_matches(given, token):
            raise ApiError(
                401, "wrong_token", "the token is wrong; use the --token / SSL_CYTO_TOKEN of the server"
            )

    return guard


def set_cookie(response: Response, token: str) -> None:
    """Remember the token in the browser for the page's image and API requests."""
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
