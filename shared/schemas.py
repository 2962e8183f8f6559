"""Wire formats of the critic HTTP API, defined once and imported by the service, the client and the trainer.

Every limit a caller can hit (characters per field, steps per solution, items per batch) is part of the schema,
so an over-long request fails validation with a 422 that names the field and the limit instead of reaching the
engine.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

MAX_PROBLEM_CHARS = 20_000
MAX_REFERENCE_CHARS = 40_000
MAX_SOLUTION_CHARS = 60_000
MAX_STEP_CHARS = 10_000
MAX_STEPS = 100
MAX_NOTE_CHARS = 500
MAX_BATCH_ITEMS = 64
MAX_REQUEST_ID_CHARS = 200


class _Model(BaseModel):
    """Base of every wire model: unknown fields are an error, so a typo in a request is never silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Case(StrEnum):
    """The critic's classification of a whole student solution."""

    A = "A"  # fully correct
    B = "B"  # right answer, a non-routine step unjustified or invalid
    C = "C"  # no final answer (ran out of room)
    D = "D"  # final answer does not match the reference


#: Cases whose critique names a pivotal step and carries a correction.
CASES_WITH_PIVOT = frozenset({Case.B, Case.C, Case.D})


class Verdict(StrEnum):
    """The critic's verdict on one student step."""

    correct = "correct"
    incorrect = "incorrect"


class FeedbackMode(StrEnum):
    """How the faithful-scribe feedback is assembled (DESIGN.md)."""

    splice = "splice"  # the service copies steps 1..N-1 byte for byte; the critic writes only the correction
    scribe = "scribe"  # the critic writes the whole solution; the service measures verbatim fidelity


class SegmentationFormat(StrEnum):
    """Which convention a student solution was split by."""

    tags = "tags"  # <step_k> ... </step_k> (closing tags optional)
    step_lines = "step_lines"  # lines starting with "Step k:"
    paragraphs = "paragraphs"  # blank-line-separated paragraphs
    explicit = "explicit"  # the client sent the steps as a list


class Span(_Model):
    """A half-open character range [start, end) into the segmented text."""

    start: int = Field(ge=0, description="Offset of the first character.")
    end: int = Field(ge=0, description="Offset one past the last character.")


class Step(_Model):
    """One numbered student step and where it lies in the text."""

    index: int = Field(ge=1, description="1-based step number.")
    text: str = Field(description="The step's text, without its tag or 'Step k:' marker.")
    start: int = Field(ge=0, description="Offset of the step text's first character in `Segmentation.text`.")
    end: int = Field(ge=0, description="Offset one past the step text's last character.")


class Segmentation(_Model):
    """How a student solution was split into steps; echoed in every critique so callers can map steps to tokens."""

    format: SegmentationFormat = Field(description="The convention the steps were found by.")
    text: str = Field(description="The text the spans point into (the student's text, or one built from steps).")
    steps: list[Step] = Field(description="The steps, in order, numbered from 1.")
    answer: Span | None = Field(default=None, description="Span of the <answer>...</answer> content, if any.")
    think: Span | None = Field(
        default=None, description="Span of a stripped <think> block (also an unopened '...</think>'), if any."
    )
    warnings: list[str] = Field(default_factory=list, description="Irregularities that were tolerated.")


class AnswerStatus(StrEnum):
    """Outcome of the deterministic final-answer check."""

    equivalent = "equivalent"
    not_equivalent = "not_equivalent"
    no_answer = "no_answer"  # the student gave no final answer
    undecided = "undecided"  # the checker timed out or could not parse; reported, never guessed
    no_reference = "no_reference"  # nothing to compare against


class AnswerCheck(_Model):
    """Result of comparing the student's final answer with the reference (math-verify)."""

    student_answer: str | None = Field(default=None, description="The student's extracted final answer.")
    reference_answer: str | None = Field(default=None, description="The reference answer compared against.")
    equivalent: bool | None = Field(default=None, description="True/False when decided, null otherwise.")
    status: AnswerStatus = Field(description="How the check ended.")


class CheckResult(_Model):
    """One validation rule of DESIGN.md and how it went."""

    rule: str = Field(description="Rule name: structure, summary, case_vs_answer, correction_answer, fidelity.")
    passed: bool | None = Field(description="True/False, or null when the rule could not be decided.")
    detail: str = Field(default="", description="Why it failed or was not decided.")


class Checks(_Model):
    """Which validations ran on the accepted critique and their results."""

    results: list[CheckResult] = Field(default_factory=list, description="One entry per rule that ran.")
    fidelity: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Share of steps before N reproduced verbatim (scribe mode)."
    )


class StepVerdict(_Model):
    """One line of the critique's summary."""

    step: int = Field(ge=1, description="1-based student step number.")
    verdict: Verdict = Field(description="correct or incorrect.")
    note: str = Field(default="", max_length=MAX_NOTE_CHARS, description="Short reason, for incorrect steps.")


class Usage(_Model):
    """Tokens spent producing a critique, summed over attempts."""

    prompt_tokens: int = Field(default=0, ge=0, description="Prompt tokens.")
    completion_tokens: int = Field(default=0, ge=0, description="Completion tokens, reasoning included.")
    reasoning_tokens: int = Field(default=0, ge=0, description="Tokens inside the reasoning (<think>) part.")


class Meta(_Model):
    """Provenance and cost of a critique."""

    engine: str = Field(description="Engine kind: vllm, openai, transformers, checker, ...")
    model: str = Field(description="Model name or path the engine serves.")
    prompt_version: str = Field(description="Stable hash of the critic prompt template used.")
    attempts: int = Field(ge=1, description="Generations needed to get a valid critique.")
    cached: bool = Field(default=False, description="True if served from the result cache.")
    latency_ms: float = Field(ge=0.0, description="Wall time spent by the service on this request.")
    usage: Usage = Field(default_factory=Usage, description="Token usage over all attempts.")


#: A solution is "empty" when it holds nothing but ASCII whitespace. The same pattern is published in the
#: OpenAPI document and applied by the validator, so both sides agree on every string.
NOT_BLANK = r"[^\t\n\x0b\x0c\r ]"
_NOT_BLANK = re.compile(NOT_BLANK)


#: The cross-field rules of `CritiqueRequest`, in JSON Schema, so that the OpenAPI document describes exactly
#: what the validator accepts: one solution (text or steps), `final_answer` only with steps, and a reference.
REQUEST_RULES: dict[str, Any] = {
    "allOf": [
        {
            "oneOf": [
                {
                    "required": ["student_solution"],
                    "properties": {
                        "student_solution": {"type": "string", "pattern": NOT_BLANK},
                        "steps": {"type": "null"},
                        "final_answer": {"type": "null"},
                    },
                },
                {
                    "required": ["steps"],
                    "properties": {"steps": {"type": "array"}, "student_solution": {"type": "null"}},
                },
            ]
        },
        {
            "anyOf": [
                {
                    "required": ["reference_answer"],
                    "properties": {"reference_answer": {"type": "string", "minLength": 1}},
                },
                {
                    "required": ["reference_solution"],
                    "properties": {"reference_solution": {"type": "string", "minLength": 1}},
                },
            ]
        },
    ]
}


class CritiqueRequest(_Model):
    """Ask for a faithful-scribe critique of one student solution.

    Give exactly one of `student_solution` (text) or `steps` (a list); `final_answer` only with `steps`; and
    `reference_answer` and/or `reference_solution` (not empty)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra=REQUEST_RULES)

    problem: str = Field(min_length=1, max_length=MAX_PROBLEM_CHARS, description="The problem statement.")
    reference_solution: str | None = Field(
        default=None, max_length=MAX_REFERENCE_CHARS, description="A worked reference solution."
    )
    reference_answer: str | None = Field(
        default=None, max_length=MAX_PROBLEM_CHARS, description="The reference final answer (LaTeX allowed)."
    )
    student_solution: str | None = Field(
        default=None,
        max_length=MAX_SOLUTION_CHARS,
        description="The student's solution text; segmented by <step_k> tags, 'Step k:' lines or paragraphs.",
    )
    steps: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=MAX_STEP_CHARS)]],
            Field(min_length=1, max_length=MAX_STEPS),
        ]
        | None
    ) = Field(default=None, description="The student's steps, already split (instead of student_solution).")
    final_answer: str | None = Field(
        default=None,
        max_length=MAX_PROBLEM_CHARS,
        description="With `steps`: the student's final answer, if not inside the last step.",
    )
    feedback_mode: FeedbackMode = Field(default=FeedbackMode.splice, description="splice (default) or scribe.")
    request_id: str | None = Field(
        default=None, max_length=MAX_REQUEST_ID_CHARS, description="Caller's id, echoed back in the critique."
    )

    @model_validator(mode="after")
    def _one_solution_and_a_reference(self) -> CritiqueRequest:
        if (self.student_solution is None) == (self.steps is None):
            raise ValueError("give exactly one of `student_solution` (text) or `steps` (a list of strings)")
        if self.student_solution is not None and not _NOT_BLANK.search(self.student_solution):
            raise ValueError("`student_solution` is empty")
        if self.final_answer is not None and self.steps is None:
            raise ValueError("`final_answer` goes with `steps`; put it inside `student_solution` otherwise")
        if not (self.reference_solution or self.reference_answer):
            raise ValueError("give `reference_answer` and/or `reference_solution`")
        return self


class Critique(_Model):
    """A validated faithful-scribe critique of one student solution."""

    id: str = Field(description="Unique id of this critique.")
    request_id: str | None = Field(default=None, description="The caller's request_id, if one was sent.")
    case: Case = Field(description="A, B, C or D.")
    pivotal_step: int | None = Field(default=None, ge=1, description="Step N; null for case A.")
    summary: list[StepVerdict] = Field(description="One verdict per student step, in order.")
    correction: str | None = Field(default=None, description="The corrected step N and continuation (B, C, D).")
    feedback: str = Field(description="Summary + faithful-scribe solution: the StepAlignFB teacher context.")
    feedback_mode: FeedbackMode = Field(description="How `feedback` was assembled.")
    steps: Segmentation = Field(description="The segmentation the critique refers to.")
    answer_check: AnswerCheck = Field(description="The deterministic final-answer check.")
    checks: Checks = Field(description="Validation results.")
    meta: Meta = Field(description="Provenance and cost.")


#: One batch item: a `CritiqueRequest`, or anything else, which then gets its own `invalid_request` entry in the
#: response while the other items are still critiqued (so the schema accepts any JSON value here).
BatchItem = Annotated[CritiqueRequest | JsonValue, Field(union_mode="left_to_right")]


class BatchCritiqueRequest(_Model):
    """Several critique requests, answered in order. Each item is validated on its own: a malformed item gets
    its own error entry (status 422) and the others are still critiqued."""

    items: list[BatchItem] = Field(
        min_length=1, max_length=MAX_BATCH_ITEMS, description="The requests (each a CritiqueRequest)."
    )


class ErrorCode(StrEnum):
    """Every error the API can return; the HTTP status of each is fixed in one table of the service."""

    invalid_request = "invalid_request"  # 422: failed schema validation
    unsupported_problem = "unsupported_problem"  # 422: the engine cannot critique this kind of problem
    segmentation_failed = "segmentation_failed"  # 422: no steps could be found in the solution
    payload_too_large = "payload_too_large"  # 413
    unsupported_media_type = "unsupported_media_type"  # 415: the body is not application/json
    unauthorized = "unauthorized"  # 401
    not_found = "not_found"  # 404
    method_not_allowed = "method_not_allowed"  # 405
    rate_limited = "rate_limited"  # 429, with Retry-After
    overloaded = "overloaded"  # 503, with Retry-After
    not_ready = "not_ready"  # 503: engine still loading
    invalid_critique = "invalid_critique"  # 502: no valid critique within max_attempts
    engine_error = "engine_error"  # 502: the engine failed
    timeout = "timeout"  # 504
    internal = "internal"  # 500


class ErrorInfo(_Model):
    """What went wrong, where, and what is allowed."""

    code: ErrorCode = Field(description="Machine-readable error code.")
    message: str = Field(description="Human-readable explanation.")
    details: list[dict[str, Any]] = Field(default_factory=list, description="Per-field or per-attempt details.")


class ErrorBody(_Model):
    """The one error body of the API: {"error": {"code", "message", "details"}}."""

    error: ErrorInfo


class BatchItemResult(_Model):
    """One batch item: a critique, or the error it would have got as a single request."""

    index: int = Field(ge=0, description="Position of the item in the request.")
    status: int = Field(description="The HTTP status this item would have had alone.")
    critique: Critique | None = Field(default=None, description="Present on success.")
    error: ErrorInfo | None = Field(default=None, description="Present on failure.")


class BatchCritiqueResponse(_Model):
    """Results of a batch, in request order."""

    results: list[BatchItemResult]


class Limits(_Model):
    """Request limits enforced by the schema and the service."""

    max_problem_chars: int = MAX_PROBLEM_CHARS
    max_reference_chars: int = MAX_REFERENCE_CHARS
    max_solution_chars: int = MAX_SOLUTION_CHARS
    max_step_chars: int = MAX_STEP_CHARS
    max_steps: int = MAX_STEPS
    max_batch_items: int = MAX_BATCH_ITEMS
    max_body_bytes: int = Field(default=1_000_000, description="Largest accepted request body.")


class ServiceInfo(_Model):
    """GET /v1/info."""

    engine: str = Field(description="Engine kind.")
    model: str = Field(description="Model name or path.")
    prompt_version: str = Field(description="Hash of the critic prompt template.")
    feedback_modes: list[FeedbackMode] = Field(description="Supported feedback modes.")
    max_attempts: int = Field(ge=1, description="Generations tried before a 502.")
    limits: Limits = Field(default_factory=Limits, description="Request limits.")
    version: str = Field(description="stepalign version.")


class Health(_Model):
    """GET /healthz and /readyz."""

    status: Literal["ok", "loading", "failing"] = Field(description="ok, loading or failing.")
    detail: str = Field(default="", description="Why not ok.")
