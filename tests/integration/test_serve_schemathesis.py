"""Schemathesis against the gateway's own OpenAPI schema, with real engines behind it:
valid and invalid requests alike get an answer, never a 5xx and never a hang."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from tests.integration.test_serve_gateway import MODEL, ServeStack

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
ANSWER_TIMEOUT_S = 30  # a hang shows as a timeout here


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeStack]:
    s = ServeStack(tmp_path_factory.mktemp("schema"), n_ctx=128)  # short answers
    try:
        s.start()
        yield s
    finally:
        s.stop()


def openai_error_shape(response: Any) -> None:
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"]["message"], str), body


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_5xx_and_no_hang(stack: ServeStack, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_dict(stack.server.app.openapi())
    headers = {"Authorization": f"Bearer {stack.token}"}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions",
                                              "/v1/embeddings", "/v1/models", "/health"}
    for op in operations:
        if mode is GenerationMode.NEGATIVE and op.method.upper() != "POST":
            continue  # nothing to break in a GET without parameters
        @given(case=op.as_strategy(generation_mode=mode), real_model=st.booleans())
        @settings(max_examples=100, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any, real_model: bool) -> None:
            if real_model and isinstance(case.body, dict) and "model" in case.body:
                case.body["model"] = MODEL  # reach the engines, not only the 404 path
            response = case.call(base_url=stack.url, headers=headers,
                                 timeout=ANSWER_TIMEOUT_S)
            case.validate_response(response, checks=[not_a_server_error])
            openai_error_shape(response)

        check()
    assert all(s != 500 for (_, _, s) in stack.gw.metrics.requests)
    if mode is GenerationMode.POSITIVE:  # and the engines really answered some of them
        answered = {r for (m, r, s) in stack.gw.metrics.requests if m == MODEL and s == 200}
        assert {"chat", "completions"} <= answered
