"""Shared fixtures: small generated datasets in the two real layouts, and the real PBC subset.

Generated fixtures are session-scoped (made once per test run). The real PBC subset lives in
``../shared/data/pbc_subset`` beside the repository (override with ``SSL_CYTO_PBC``); tests that
need it are skipped with a clear reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # Keep test runs quiet and offline; two cores only.
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def pbc_root() -> Path:
    """The real PBC subset (8 classes x 600 JPEGs), read through the generic folder source."""
    root = Path(os.environ.get("SSL_CYTO_PBC", REPO.parent / "shared" / "data" / "pbc_subset"))
    if not (root / "manifest.csv").exists():
        pytest.skip(f"real PBC subset not found at {root} (set SSL_CYTO_PBC)")
    return root


@pytest.fixture(scope="session")
def synth_aml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated AML-LMU layout: AML-Cytomorphology/<CLS>/<CLS>_NNNN.tiff + annotations.dat."""
    from ssl_cyto.data.synth import synthesize

    out = tmp_path_factory.mktemp("aml")
    synthesize(out, layout="aml-lmu", per_class=4, seed=0)
    return out


@pytest.fixture(scope="session")
def synth_bm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated BM-MLL layout: BM_cytomorphology_data/<CLS>/[range/]<CLS>_NNNNN.jpg."""
    from ssl_cyto.data.synth import synthesize

    out = tmp_path_factory.mktemp("bm")
    synthesize(out, layout="bm-mll", per_class=4, seed=0)
    return out


@pytest.fixture(scope="session")
def synth_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated ImageFolder layout: <class>/<file>.png with manifest.csv."""
    from ssl_cyto.data.synth import synthesize

    out = tmp_path_factory.mktemp("folder")
    synthesize(out, layout="folder", per_class=6, seed=0)
    return out
