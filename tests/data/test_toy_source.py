"""A new source is one file: a CellSource subclass plus its registration (here a folder with labels.csv).

The toy source below is what a contributor writes to add a dataset: ``kind``, ``detect`` and
``records``. Registered, it is scanned like the built-in sources, detected from its layout, and its
labels map to no shared class (``to_shared`` gives None) while staying usable within the source.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_cyto.data.scanning import catalog_from_path, scan
from ssl_cyto.data.sources import (
    SOURCES,
    CellRecord,
    CellSource,
    SourceError,
    detect_source,
    open_source,
    register_source,
)
from ssl_cyto.data.sources.base import NOT_MINE, SURE
from ssl_cyto.data.vocabulary import harmonise, to_shared
from ssl_cyto.formats.catalog import CATALOG_COLUMNS

LABELS_NAME = "labels.csv"


class ToySource(CellSource):
    """Images anywhere under the folder; labels from ``labels.csv`` (``file,label``)."""

    kind = "toy"

    @classmethod
    def detect(cls, root: Path) -> int:
        return SURE if (root / LABELS_NAME).is_file() else NOT_MINE

    def records(self) -> Iterator[CellRecord]:
        self.problems = []
        root = self.given.resolve()
        with open(root / LABELS_NAME, newline="") as fh:
            labels = {row["file"]: row["label"] for row in csv.DictReader(fh)}
        for image in sorted(root.glob("*.png")):
            label = labels.get(image.name)
            if label is None:
                self.problems.append(f"not in {LABELS_NAME}: {image.name}")
            yield self._record(root, image.name, label)


@pytest.fixture
def toy_registered() -> Iterator[str]:
    register_source("toy", ToySource)
    yield "toy"
    SOURCES.pop("toy")


@pytest.fixture
def toy_folder(tmp_path: Path) -> Path:
    root = tmp_path / "toy_data"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = [("a.png", "round"), ("b.png", "spiky"), ("c.png", "round")]
    for name, _ in rows + [("unlisted.png", None)]:
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / name)
    with open(root / LABELS_NAME, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label"])
        writer.writerows(rows)
    return root


def test_registered_as_module_and_class(toy_registered: str) -> None:
    assert SOURCES["toy"] == f"{__name__}:ToySource"


def test_toy_source_is_scanned_into_a_catalog(toy_registered: str, toy_folder: Path) -> None:
    df = scan([("toy", str(toy_folder))])
    assert list(df.columns) == CATALOG_COLUMNS
    assert df["cell_id"].tolist() == ["toy/a.png", "toy/b.png", "toy/c.png", "toy/unlisted.png"]
    assert df["label"].tolist() == ["round", "spiky", "round", None]
    assert set(df["source"]) == {"toy"} and set(df["root"]) == {str(toy_folder.resolve())}
    assert df["um_per_px"].isna().all() and df["sha256"].isna().all()
    assert df.attrs["problems"] == {"toy": ["not in labels.csv: unlisted.png"]}
    # detected from its layout, like the built-in sources
    assert detect_source(toy_folder) == "toy"
    assert catalog_from_path(toy_folder)["cell_id"].tolist() == df["cell_id"].tolist()
    assert isinstance(open_source("toy", toy_folder), ToySource)


def test_toy_labels_have_no_shared_class_but_stay_native(toy_registered: str, toy_folder: Path) -> None:
    df = scan([("toy", str(toy_folder))])
    # issue 10: an unknown source's labels map to no shared class instead of raising
    assert [to_shared(s, lab) for s, lab in zip(df["source"], df["label"], strict=True)] == [None] * 4
    assert harmonise(df["source"], df["label"], "shared") == [None] * 4
    assert harmonise(df["source"], df["label"], "native") == ["round", "spiky", "round", None]


def test_unregistered_kind_is_refused(toy_folder: Path) -> None:
    assert "toy" not in SOURCES
    with pytest.raises(SourceError, match="unknown source kind 'toy'"):
        scan([("toy", str(toy_folder))])
