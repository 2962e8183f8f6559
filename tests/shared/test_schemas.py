"""Wire schemas: limits are part of the schema and fail with errors that name the field and the limit."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.schemas import (
    MAX_BATCH_ITEMS,
    MAX_PROBLEM_CHARS,
    MAX_STEPS,
    BatchCritiqueRequest,
    CritiqueRequest,
    ErrorBody,
    ErrorCode,
    FeedbackMode,
)

OK = {"problem": "What is 1+1?", "reference_answer": "2", "student_solution": "<step_1>1+1=2</step_1>"}


def _errors(**changes: object) -> list[str]:
    with pytest.raises(ValidationError) as info:
        CritiqueRequest.model_validate({**OK, **changes})
    return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in info.value.errors()]


def test_valid_request_defaults() -> None:
    req = CritiqueRequest.model_validate(OK)
    assert req.feedback_mode is FeedbackMode.splice and req.steps is None


def test_limits_name_the_field() -> None:
    assert any(e.startswith("problem:") and str(MAX_PROBLEM_CHARS) in e for e in _errors(problem="x" * 20_001))
    too_many = _errors(student_solution=None, steps=["s"] * (MAX_STEPS + 1))
    assert any(e.startswith("steps:") and str(MAX_STEPS) in e for e in too_many)
    assert any(e.startswith("steps.0:") for e in _errors(student_solution=None, steps=[""]))


def test_cross_field_rules() -> None:
    assert any("exactly one of `student_solution`" in e for e in _errors(steps=["a"]))
    assert any("exactly one of" in e for e in _errors(student_solution=None))
    assert any("reference_answer` and/or" in e for e in _errors(reference_answer=None))
    assert any("is empty" in e for e in _errors(student_solution="  \n"))
    assert any("`final_answer` goes with `steps`" in e for e in _errors(final_answer="2"))
    assert any("extra" in e.lower() for e in _errors(studnet_solution="typo"))
    assert any(e.startswith("feedback_mode:") for e in _errors(feedback_mode="verbatim"))


def test_batch_limit() -> None:
    with pytest.raises(ValidationError, match=str(MAX_BATCH_ITEMS)):
        BatchCritiqueRequest.model_validate({"items": [OK] * (MAX_BATCH_ITEMS + 1)})
    with pytest.raises(ValidationError):
        BatchCritiqueRequest.model_validate({"items": []})


def test_error_body_shape() -> None:
    body = ErrorBody.model_validate({"error": {"code": "invalid_critique", "message": "m", "details": [{"a": 1}]}})
    assert body.error.code is ErrorCode.invalid_critique
    assert body.model_dump(mode="json") == {
        "error": {"code": "invalid_critique", "message": "m", "details": [{"a": 1}]}
    }
