"""Errors of the retrieval service: start-up problems and the 4xx answers of the API.

:class:`ServeError` is a start-up problem (no index, model missing, port taken); the CLI prints it
as one line. :class:`ApiError` is a bad request: the app turns it into a JSON body
``{"error": <code>, "detail": <message>}`` with its HTTP status, never a traceback.
"""

from __future__ import annotations

from ssl_cyto.formats.errors import InputError, SslCytoError

__all__ = ["ApiError", "ServeError"]


class ServeError(InputError):
    """The service cannot start: the message names the folder, file or option and the fix."""


class ApiError(SslCytoError):
    """A request the API refuses; ``status`` is the HTTP status (4xx), ``code`` a short name.

    Args:
        status: HTTP status code (400, 401, 404, 413, 415, 422).
        code: machine-readable name, e.g. ``"too_many_pixels"``.
        detail: the sentence shown to the user: what is wrong and what to send instead.
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
