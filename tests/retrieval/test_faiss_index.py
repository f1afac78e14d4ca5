"""ssl_cyto.retrieval.faiss_index: normalisation, parameters, and the CLI's copy of the kinds/defaults."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from ssl_cyto.retrieval import faiss_index as fi


def test_normalize_unit_rows_and_zero_rows() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float64)
    out = fi.normalize(x)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    with pytest.raises(fi.RetrievalError, match="row 1"):
        fi.normalize(np.array([[1.0, 0.0], [np.inf, 0.0]]))


def test_resolve_params_defaults() -> None:
    p = fi.resolve_params("ivfpq", n=10_000, dim=384, params={})
    assert p["nlist"] == fi.default_nlist(10_000) == 100 and p["pq_m"] == 24 and p["refine"] == 20
    assert fi.resolve_params("flat", 10, 4, {"nlist": None}) == {}


def test_cli_help_names_the_library_kinds_and_defaults() -> None:
    from ssl_cyto.cli import index as cli_index

    assert cli_index.KINDS == fi.KINDS
    assert cli_index.DEFAULT_NPROBE == fi.DEFAULTS["ivf"]["nprobe"] == fi.DEFAULTS["ivfpq"]["nprobe"]
    assert fi.DEFAULTS["hnsw"] == cli_index.DEFAULT_HNSW
    assert fi.DEFAULTS["ivfpq"]["refine"] == cli_index.DEFAULT_REFINE
    assert set(cli_index.PARAM_NAMES) == {k for d in fi.DEFAULTS.values() for k in d}
    parser = argparse.ArgumentParser()
    cli_index.add_arguments(parser)
    args = parser.parse_args(["emb"])
    assert args.kind == "flat" and args.seed == 0 and args.out is None
