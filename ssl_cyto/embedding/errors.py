"""The expected errors of ``ssl-cyto embed``."""

from __future__ import annotations

from ssl_cyto.formats.errors import InputError, MissingInputError

__all__ = ["EmbedError", "MissingModelError", "ModelMismatchError"]


class EmbedError(InputError):
    """Embedding cannot proceed (bad option, inconsistent output folder); the message says how to fix it."""


class ModelMismatchError(EmbedError):
    """The output folder holds (partial) embeddings of another model or other data."""


class MissingModelError(EmbedError, MissingInputError):
    """A ``--model`` path (backbone folder, ``model.json`` or ``.ckpt``) that does not exist."""
