"""The engine protocol: turn one critique job into text. Everything model-specific lives behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel, Field

from shared.schemas import CritiqueRequest, FeedbackMode, Usage


class Sampling(BaseModel):
    """Decoding parameters, set explicitly for every engine (in-process vLLM applies no generation_config)."""

    temperature: float = Field(default=0.0, ge=0.0, description="0 = greedy, as the paper decodes the critic.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(default=-1, description="Top-k cut-off; -1 disables it.")
    min_p: float = Field(default=0.0, ge=0.0, le=1.0, description="Minimum token probability relative to the top.")
    repetition_penalty: float = Field(default=1.0, gt=0.0, description="Penalty on repeated tokens (1 = none).")
    max_tokens: int = Field(default=16384, ge=1, description="Cap on generated tokens, reasoning included.")
    thinking_budget: int | None = Field(
        default=12288, ge=0, description="Tokens of reasoning before `</think>` is forced; null = no budget."
    )
    seed: int | None = Field(default=0, description="Sampling seed, for reproducible non-greedy decoding.")


@dataclass(frozen=True)
class Job:
    """Everything an engine may need for one generation."""

    request_id: str
    messages: list[dict[str, str]]
    request: CritiqueRequest  # the structured inputs, for programmatic engines
    steps: list[str]
    student_answer: str | None
    mode: FeedbackMode
    sampling: Sampling
    schema_regex: str | None = None  # structured-output constraint on the text after the reasoning


@dataclass
class Generation:
    """What an engine produced: the text after any reasoning, the reasoning itself, and the token counts."""

    text: str
    reasoning: str | None = None
    usage: Usage = field(default_factory=Usage)


class Engine(Protocol):
    """A critic engine. `generate` may be cancelled; the engine must then stop the work it started."""

    name: str
    model: str

    async def start(self) -> None: ...

    async def ready(self) -> bool: ...

    async def generate(self, job: Job) -> Generation: ...

    async def close(self) -> None: ...
