"""One probe pipeline: every protocol through the one runner, and ``probe.json`` keeps every old key.

The fixtures in ``tests/fixtures/probe_json/`` were written by the probe of commit da25d6f (two
pipelines, before issue 23) on the folders :mod:`tests.evaluation.probe_fixture` builds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ssl_cyto.evaluation import probing
from ssl_cyto.evaluation.holdout import HoldOut
from ssl_cyto.formats.probe_json import read_probe_json
from tests.evaluation.probe_fixture import CASES, build

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "probe_json"


def key_paths(obj: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value (list items share ``[]``)."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(f"{prefix}/{k}")
            out |= key_paths(v, f"{prefix}/{k}")
    elif isinstance(obj, list):
        for v in obj:
            out |= key_paths(v, f"{prefix}[]")
    return out


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("case", CASES)
def test_every_protocol_runs_through_the_one_runner_and_keeps_the_old_keys(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, kwargs = build(case, tmp_path)
    seen: list[str] = []
    real = probing._run_task

    def spy(proto, task, *args, **kw):  # type: ignore[no-untyped-def]
        seen.append(type(proto).__name__)
        return real(proto, task, *args, **kw)

    monkeypatch.setattr(probing, "_run_task", spy)
    res = probing.probe(d, command="test", **kwargs)
    assert seen and len(set(seen)) == 1
    new = read_probe_json(Path(res["report"]).parent)
    old = json.loads((FIXTURES / f"{case}.json").read_text())
    missing = sorted(key_paths(old) - key_paths(new))
    assert not missing, missing[:20]
    assert new["knn_index"] and new["metrics"]
    # the same numbers where the method did not change (kNN through FAISS equals the exact kNN)
    for task, t in old["tasks"].items():
        assert new["tasks"][task]["metrics"] == t["metrics"], task


def test_a_new_protocol_is_one_registered_class(tmp_path: Path) -> None:
    class Again(HoldOut):
        name = "holdout20_again"

    with pytest.raises(probing.ProbeError, match="unknown protocol"):
        probing.get_protocol("holdout20_again")
    probing.register_protocol(Again)
    d, kwargs = build("holdout20", tmp_path)
    kwargs.update(protocol="holdout20_again", fast=True, near_duplicates=False)
    res = probing.probe(d, command="test", **kwargs)
    assert res["protocol"] == "holdout20_again" and set(res["tasks"]) == {"aml-lmu", "folder:b"}
