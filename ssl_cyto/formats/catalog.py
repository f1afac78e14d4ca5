"""``catalog.parquet``: one row per cell of one or more sources (the only reader and writer).

Columns (:data:`CATALOG_COLUMNS`, a contract with every later step): ``cell_id`` (``source/path``,
unique and stable), ``source``, ``path`` (relative to ``root``, POSIX), ``root``, ``label`` (gold label,
null if none), ``reannot1``, ``reannot2`` (null if none), ``um_per_px`` (null if unknown), ``sha256``
(null where not computed). The absolute image path of a row is ``Path(root) / path``.

Every column is a string but ``um_per_px`` (float64). In a DataFrame from this module, string
columns hold ``str`` or ``None`` (never NaN), ``um_per_px`` holds floats or NaN.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ssl_cyto.formats.errors import InputError, MissingInputError, OutputError

CATALOG_COLUMNS = [
    "cell_id",
    "source",
    "path",
    "root",
    "label",
    "reannot1",
    "reannot2",
    "um_per_px",
    "sha256",
]
REQUIRED_COLUMNS = ("cell_id", "source", "path", "root")  # the others may be absent (then null)
FLOAT_COLUMNS = ("um_per_px",)


class CatalogError(InputError):
    """A catalog that cannot be built, read or written (duplicate ids, missing columns...)."""


def catalog_schema() -> pa.Schema:
    """The Arrow schema of ``catalog.parquet``: strings, and float64 ``um_per_px``."""
    return pa.schema([(c, pa.float64() if c in FLOAT_COLUMNS else pa.string()) for c in CATALOG_COLUMNS])


def normalise_catalog(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with exactly :data:`CATALOG_COLUMNS` in order, nulls as None (strings) or NaN (floats).

    Raises:
        CatalogError: a column of :data:`CATALOG_COLUMNS` is missing.
    """
    missing = [c for c in CATALOG_COLUMNS if c not in df.columns]
    if missing:
        raise CatalogError(f"catalog lacks columns {missing}; expected {CATALOG_COLUMNS}")
    out = df[CATALOG_COLUMNS].copy()
    for c in CATALOG_COLUMNS:
        if c in FLOAT_COLUMNS:
            out[c] = out[c].astype("float64")
        else:
            out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def catalog_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """A catalog DataFrame from row dicts (e.g. :meth:`CellRecord.as_dict`), typed as in the file."""
    return normalise_catalog(pd.DataFrame(list(rows), columns=CATALOG_COLUMNS))


def write_catalog(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a catalog to Parquet (columns checked, fixed schema); atomic. Returns the path.

    Raises:
        CatalogError: missing columns.
        OutputError: the file cannot be written.
    """
    missing = [c for c in CATALOG_COLUMNS if c not in df.columns]
    if missing:
        raise CatalogError(f"catalog lacks columns {missing}; expected {CATALOG_COLUMNS}")
    path = Path(path)
    table = pa.Table.from_pandas(df[CATALOG_COLUMNS], schema=catalog_schema(), preserve_index=False)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        tmp.replace(path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the catalog ({exc}); choose a writable --out") from exc
    return path


def read_catalog(path: str | os.PathLike) -> pd.DataFrame:
    """Read a catalog written by :func:`write_catalog` (columns checked, nulls normalised).

    Raises:
        MissingInputError: no such file.
        CatalogError: not Parquet, or not a catalog (missing columns).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(
            f"{path}: no such catalog; make one with `ssl-cyto data scan ... --out {path}`"
        )
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds; reported with the file name
        raise CatalogError(f"{path}: cannot read as Parquet ({exc})") from exc
    missing = [c for c in CATALOG_COLUMNS if c not in df.columns]
    if missing:
        raise CatalogError(f"{path}: not a catalog, lacks columns {missing}; expected {CATALOG_COLUMNS}")
    return normalise_catalog(df)


def json_value(value: Any) -> Any:
    """A catalog cell as a JSON value (NaN/NA/NaT -> None, numpy scalars -> Python)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def catalog_rows(df: pd.DataFrame) -> list[dict]:
    """The rows of a catalog as JSON-ready dicts: :data:`CATALOG_COLUMNS` first, then any extra column.

    Absent catalog columns are None. This is the ``.json`` of a packed sample.
    """
    cols = list(CATALOG_COLUMNS) + [c for c in df.columns if c not in CATALOG_COLUMNS]
    return [{c: json_value(rec.get(c)) for c in cols} for rec in df.to_dict(orient="records")]
