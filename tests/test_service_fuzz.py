"""Schemathesis fuzzes every operation of the service's OpenAPI description over real HTTP.

Checks include: no 5xx, status codes and bodies as documented, and auth enforced (ignored_auth).
Bounded to a few dozen examples per operation so the whole file takes seconds. (Operations are
looped over in one test: schemathesis' lazy pytest fixture loader breaks on pytest 9.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from service_process import start_service, stop_service

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = start_service([tmp_path_factory.mktemp("fuzz_allowed")], tmp_path_factory.mktemp("fuzz_service"))
    yield service
    stop_service(service)


@pytest.mark.slow
def test_openapi_fuzz(service):
    auth = {"Authorization": f"Bearer {service.token}"}
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json", headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"GET /health", "POST /train", "GET /train/{job_id}",
                                               "POST /train/{job_id}/cancel", "POST /render"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(headers=auth)

        fuzz()
