"""The error of the models package."""

from __future__ import annotations

from ssl_cyto.formats.errors import InputError


class BackboneError(InputError):
    """A backbone name, option or file that cannot be used (the message says which and how to fix it)."""
