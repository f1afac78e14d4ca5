"""Schema-driven fuzzing (schemathesis) of every operation, multipart uploads included: no 5xx.

Each operation gets at least ``EXAMPLES`` generated requests (positive and negative data). Besides
"no server error" the answers must use a documented status code, content type and schema.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from ssl_cyto.serve.app import create_app
from ssl_cyto.serve.state import ServeState
from tests.serve.conftest import SMALL_LIMITS

EXAMPLES = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(state: ServeState):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(state, SMALL_LIMITS))


def _fuzz(operation, mode: GenerationMode) -> int:
    calls = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        calls.append(1)
        case.call_and_validate(checks=CHECKS if mode is GenerationMode.POSITIVE else [not_a_server_error])

    try:
        run()
    except Unsatisfiable:  # negative data for an operation without inputs: there is none
        assert mode is GenerationMode.NEGATIVE
    return len(calls)


def test_api_fuzz(api_schema) -> None:
    counts: dict[str, int] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"
        counts[name] = sum(_fuzz(operation, mode) for mode in GenerationMode)
    print(counts)
    assert len(counts) >= 8
    # an operation with inputs gets >= EXAMPLES cases per mode; one without (GET /api/info) has only a few
    # distinct requests, and hypothesis stops once it has sent them all
    with_inputs = [name for name in counts if "{" in name or name.startswith("POST")]
    assert all(counts[name] >= EXAMPLES for name in with_inputs), counts


def test_every_operation_is_fuzzed(api_schema) -> None:
    operations = {
        f"{op.method.upper()} {op.path}" for op in (r.ok() for r in api_schema.get_all_operations())
    }
    assert {
        "POST /api/query",
        "GET /api/cells/{cell_id}/neighbours",
        "GET /api/cells/{cell_id}/image",
        "GET /api/cells/{cell_id}/thumb",
        "GET /api/info",
        "GET /api/health",
        "GET /api/umap",
        "POST /api/login",
    } <= operations
