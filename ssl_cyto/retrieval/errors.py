"""The expected errors of the retrieval commands (``index build``, ``query``)."""

from __future__ import annotations

from ssl_cyto.formats.errors import InputError

__all__ = ["GpuUnavailableError", "RetrievalError"]


class RetrievalError(InputError):
    """Bad embedding folder, index file or index parameters (the message says which and how to fix)."""


class GpuUnavailableError(RetrievalError):
    """``--gpu`` was asked for but the installed FAISS has no GPU support or no GPU is visible."""
