"""The JSON bodies of the API (pydantic models: they make the OpenAPI schema at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "ERROR_RESPONSES",
    "ClassCount",
    "ErrorBody",
    "ExactMatch",
    "Health",
    "Info",
    "Login",
    "MapPlacement",
    "Neighbour",
    "QueryAnswer",
    "Scale",
    "SourceCount",
    "UmapPoints",
    "UploadInfo",
    "Warning",
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
    preview: str | None = Field(
        None, description="a JPEG data URL (<= 256 px) for formats a browser cannot show (TIFF); else absent"
    )


class Scale(BaseModel):
    """Where the best similarity falls among indexed cells' own nearest-neighbour similarities."""

    best_similarity: float
    percentile: float | None = Field(
        description="share (0-100) of a seeded sample of indexed cells whose nearest neighbour is less similar"
    )
    p1: float = Field(description="1st percentile of the sample's nearest-neighbour similarities")
    p50: float
    sample: int = Field(description="cells in the sample (at most 2,000)")


class ExactMatch(BaseModel):
    """The indexed cell an upload is (present only when it is one)."""

    cell_id: str
    label: str | None
    label_name: str | None
    by: str = Field(
        description="sha256 (same file), phash (same image re-encoded) or similarity (>= 0.99999)"
    )


class Warning(BaseModel):
    """Why an answer may mean little (tiny image, sliver, nothing similar in the index)."""

    code: str = Field(description="tiny_image, extreme_aspect or low_similarity")
    detail: str


class MapPlacement(BaseModel):
    """Positions on the page's map: the query (an upload: similarity-weighted mean of its neighbours)."""

    query: list[float] | None
    placed: str = Field(description="cell (its own UMAP position) or neighbours (weighted mean)")
    neighbours: list[list[float] | None]


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
    scale: Scale | None = Field(None, description="null when there is no neighbour")
    map: MapPlacement | None = Field(None, description="null when the folder has no UMAP")
    exact_match: ExactMatch | None = Field(
        None, description="uploads only; absent unless it is an indexed cell"
    )
    warnings: list[Warning] | None = Field(None, description="uploads only; absent when there is none")
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
    example_cell: str | None
    images_in_shards: int
    images: dict[str, int] = Field(
        description="where a sample of 20 cells' images come from: original/shard/missing"
    )
    umap: bool
    scale: dict[str, Any]
    exact_match_by: list[str]
    limits: dict[str, int]
    auth: bool


class Health(BaseModel):
    """Liveness."""

    status: str
    cells: int


class UmapPoints(BaseModel):
    """The UMAP written by ``ssl-cyto umap`` (columns; labels and sources as codes), or how to make it."""

    available: bool
    hint: str | None = None
    total: int = Field(0, description="cells on the map")
    shown: int = Field(0, description="points sent (a seeded sample of at most 50,000)")
    bounds: list[float] = Field([], description="min x, max x, min y, max y over every point")
    classes: list[str] = []
    sources: list[str] = []
    cell_id: list[str] = []
    x: list[float] = []
    y: list[float] = []
    label: list[int] = Field([], description="index into classes, -1 for no label")
    source: list[int] = Field([], description="index into sources")


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
