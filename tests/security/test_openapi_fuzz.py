"""Fuzz the OpenAI surface from its own published description: schemathesis reads
`/openapi.json`, generates valid and invalid bodies for every `/v1/*` operation and sends
them to a live gateway. No answer may be a 5xx, and every answer must match what the
document says (status, content type, body schema)."""

from __future__ import annotations

import copy
import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.hostile import TEAM_A, Hostile

# CI replays the same examples every run (a red CI is a regression, not a dice roll);
# local runs explore new ones.
IN_CI = bool(os.environ.get("CI"))

pytestmark = pytest.mark.e2e

ROUTES = ["openai", "claude", "tail", "claude-then-openai"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _with_routes(document: dict[str, Any]) -> dict[str, Any]:
    """Mostly this gateway's own route names, so bodies reach the stages behind the lookup."""
    document = copy.deepcopy(document)
    schemas = document["components"]["schemas"]
    for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest",
                 "MessagesRequest", "MessagesCountRequest", "ResponsesRequest"):  # fmt: skip
        schemas[name]["properties"]["model"] = {"type": "string", "enum": ROUTES}
    return document


def test_the_published_document_describes_the_proxy(hostile_proc: Hostile) -> None:
    document = httpx.get(hostile_proc.url + "/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages",
                 "/v1/messages/count_tokens", "/v1/responses"):  # fmt: skip
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"].startswith("#/components/schemas/")
    assert "get" in document["paths"]["/v1/models"]
    assert {"get", "delete"} <= set(document["paths"]["/v1/responses/{id}"])


def _operations(hostile: Hostile) -> list[Any]:
    document = httpx.get(hostile.url + "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(_with_routes(document)).include(path_regex="^/v1/")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_5xx_and_every_answer_as_documented(hostile: Hostile, mode: GenerationMode) -> None:
    operations = _operations(hostile)
    assert {op.path for op in operations} >= {
        "/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/responses",
    }  # fmt: skip
    for operation in operations:

        @given(operation.as_strategy(generation_mode=mode))
        @settings(
            derandomize=IN_CI,
            max_examples=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            case.call_and_validate(
                base_url=hostile.url,
                headers={"Authorization": f"Bearer {TEAM_A}"},
                checks=CHECKS,
                timeout=20,
            )

        call()
    hostile.healthy()
