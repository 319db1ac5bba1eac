"""Fuzzing the real server from its own OpenAPI document: no input may produce a 5xx.

Schemathesis generates requests that fit the document and requests that break
it, for every operation, and checks each response against the document: no
server error, a documented status code and content type, a body of the
documented shape (the one error shape included).
"""

from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from _support.serving import copy_project, serving
from setpoint.project import Project
from setpoint.registry.api_keys import create_key

pytestmark = [pytest.mark.slow, pytest.mark.hostile]

# A request that breaks the document must get a 4xx; 413 (a batch over maxItems) is
# the status the server owes such a request, so it counts as a rejection too.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415", "422"]
            }
        }
    }
)


ADMIN = {"/v1/admin/promote", "/v1/admin/rollback", "/v1/admin/reload"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_breaks_the_server(
    flights_project: Path, tmp_path: Path, mode: GenerationMode
) -> None:
    # A private copy: with a valid key the fuzz may promote version 2 and roll it back.
    root = copy_project(flights_project, tmp_path / "flights")
    key = create_key(Project.open(root).store.db, name="fuzz")
    with serving(root) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=CONFIG)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/v1/predict", "/v1/feedback", "/v1/models"}
        assert {op.path for op in operations} >= ADMIN
        for operation in operations:
            if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
                continue  # they take no input, so there is nothing to break
            if operation.path in ADMIN:
                # Without a valid key (as generated) they are refused at once; with one they
                # run the gate or reload models, so fewer examples.
                _fuzz(operation, mode, server.url, examples=12)
                _fuzz(operation, mode, server.url, examples=6, key=key)
            else:
                _fuzz(operation, mode, server.url, examples=80)
        assert "Traceback" not in server.log()


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    url: str,
    *,
    examples: int,
    key: str | None = None,
) -> None:
    headers = None if key is None else {"Authorization": f"Bearer {key}"}

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, headers=headers)
        assert response.status_code < 500, response.text
        case.validate_response(response)

    fuzz()
