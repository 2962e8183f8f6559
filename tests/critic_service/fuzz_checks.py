"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.critic_service.fuzz_checks): the check that a request the
published schema calls valid is never rejected for its shape; and, for the fuzzing phase only, a way around a
limit of the generator (see `before_load_schema`).

Schemathesis's own `positive_data_acceptance` can only look at status codes, and a schema-valid request may
still be refused for what it says (the checker engine answers `unsupported_problem` 422 for anything that is
not an arithmetic chain). A rejection for shape is an `invalid_request` answer; this check fails on any such
answer to a schema-valid request, and on any batch item that is valid by the schema but got one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jsonschema_rs
import schemathesis

from shared.schemas import CritiqueRequest

_ITEM = jsonschema_rs.validator_for(CritiqueRequest.model_json_schema())


def _error(body: Any) -> dict[str, Any]:
    return body.get("error") or {} if isinstance(body, dict) else {}


@schemathesis.check
def schema_valid_is_not_rejected_for_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    if response.status_code == 422 and _error(body).get("code") == "invalid_request":
        raise AssertionError(f"a schema-valid request was rejected: {_error(body).get('message')}")
    if case.path == "/v1/critiques/batch" and response.status_code == 200 and isinstance(case.body, dict):
        for result, item in zip(body.get("results", []), case.body.get("items", []), strict=False):
            code = (result.get("error") or {}).get("code")
            if code == "invalid_request" and _ITEM.is_valid(item):
                raise AssertionError(f"a schema-valid batch item was rejected: {result['error']['message']}")
    return None


# Hypothesis cannot build a string strategy with min_size above its 8 KiB buffer, and schemathesis's negative
# fuzzing turns `maxLength: 60000` into exactly that: the run then stops with an error for the operation. So the
# fuzzing pass drops the length limits above that size from the schema it generates from (positive strings stay
# far below them anyway); the coverage pass, run on the untouched schema, still sends the over-long strings.
HYPOTHESIS_BUFFER = 8 * 1024


def _drop_long_limits(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("maxLength"), int) and node["maxLength"] > HYPOTHESIS_BUFFER:
            del node["maxLength"]
        for value in node.values():
            _drop_long_limits(value)
    elif isinstance(node, list):
        for value in node:
            _drop_long_limits(value)


if os.environ.get("STEPALIGN_FUZZ_PASS") == "fuzzing":

    @schemathesis.hook
    def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
        _drop_long_limits(raw_schema)
