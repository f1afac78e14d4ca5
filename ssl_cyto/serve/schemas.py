"""The JSON bodies of the API (pydantic models: they make the OpenAPI schema at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "ERROR_RESPONSES",
    "ClassCount",
    "ErrorBody",
    "Health",
    "Info",
    "Login",
    "Neighbour",
    "QueryAnswer",
    "SourceCount",
    "UmapPoints",
    "UploadInfo",
]


class ErrorBody(BaseModel):
    """Every 4xx answer: a short code and a sentence naming the problem and the fix."""

    error: str = Field(description="machine-readable code, e.g. too_many_pixels, unknown_cell")
    detail: str = Field(description="what is wrong and what to send instead")


class Neighbour(BaseModel):
    """One similar cell: the fields of ``ssl-cyto query --json`` plus ``source`` and ``label_name``."""

    rank: int = Field(ge=1)
    cell_id: str
    path: str = Field(description="image path relative to the cell's source root")
    label: str | None = Field(description="gold expert label (code), null if none")
    label_name: str | None = Field(description="full class name of the label")
    source: str
    similarity: float = Field(description="cosine similarity")


class UploadInfo(BaseModel):
    """What was decoded from an upload (its name is not kept)."""

    format: str
    width: int
    height: int


class QueryAnswer(BaseModel):
    """Neighbours of one query (an upload or an indexed cell)."""

    query: str = Field(description="the cell id, or 'upload'")
    k: int
    label: str | None = Field(description="label filter applied, if any")
    source: str | None = Field(description="source filter applied, if any")
    query_label: str | None = Field(description="expert label of the query cell (null for an upload)")
    query_label_name: str | None = None
    query_source: str | None = None
    upload: UploadInfo | None = None
    neighbours: list[Neighbour]


class ClassCount(BaseModel):
    """An expert label of the indexed cells."""

    label: str
    name: str
    count: int


class SourceCount(BaseModel):
    """A source of the indexed cells."""

    source: str
    count: int


class Info(BaseModel):
    """The loaded model, index and cells."""

    model: dict[str, Any]
    index: dict[str, Any]
    cells: int
    classes: list[ClassCount]
    sources: list[SourceCount]
    images_in_shards: int
    umap: bool
    limits: dict[str, int]
    auth: bool


class Health(BaseModel):
    """Liveness."""

    status: str
    cells: int


class UmapPoints(BaseModel):
    """The UMAP written by ``ssl-cyto umap`` (columns), or how to make it."""

    available: bool
    hint: str | None = None
    cell_id: list[str] = []
    x: list[float] = []
    y: list[float] = []
    label: list[str | None] = []
    source: list[str] = []


class Login(BaseModel):
    """The token typed into the page's prompt."""

    token: str = Field(max_length=4096)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error(
        "bad request: empty, truncated or corrupt image, malformed form, unknown label/source filter"
    ),
    401: _error("missing or wrong token (when the server was started with --token)"),
    404: _error("unknown cell id, or its image is not available"),
    413: _error("upload over --max-bytes, or an image declaring more than --max-pixels"),
    415: _error("not an image of a supported format, or not multipart/form-data"),
    422: _error("a parameter out of range (k) or of the wrong type"),
}
