"""The one error base class of ssl_cyto.

Every error the library raises on purpose (bad input, a missing file, a mismatch between
artefacts) derives from :class:`SslCytoError`. The CLI layer prints such an error as one line on
stderr (``error: <message>``) with exit status 2 and no traceback (``ssl-cyto --debug ...`` shows
it); anything else is a bug and keeps its traceback.

Subclasses keep their old built-in bases (``ValueError``, ``FileNotFoundError``) as well, so
``except ValueError`` in user code written against earlier versions still catches them.
"""

from __future__ import annotations


class SslCytoError(Exception):
    """Base class of every expected ssl_cyto error: the message names the file or option and the fix."""


class InputError(SslCytoError, ValueError):
    """A file, folder or option that cannot be used as given."""


class MissingInputError(SslCytoError, FileNotFoundError):
    """A file or folder that should exist and does not."""

    def __str__(self) -> str:  # FileNotFoundError(msg) would print "[Errno ...]" forms otherwise
        return str(self.args[0]) if self.args else ""


class OutputError(SslCytoError, OSError):
    """An output path that cannot be created or written."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
