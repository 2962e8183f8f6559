"""Shared set-up of the real-vLLM-on-CPU tests: the tiny model, engine settings, and the critique job."""

from __future__ import annotations

import os
from pathlib import Path

from critic_service.engines.base import Job, Sampling
from critic_service.settings import Settings
from shared.critique_text import SchemaLimits, schema_regex
from shared.prompts import critic_messages
from shared.schemas import CritiqueRequest, FeedbackMode
from tests.critic_service.test_server import REQUEST

STEPS = ["37 + 48 = 85", "85 - 19 = 67"]
# 16 reasoning tokens, then the schema; room for two 200-character notes and a body.
SAMPLING = Sampling(temperature=0.0, max_tokens=600, thinking_budget=16, seed=0)
# Small enough that a whole critique fits in max_tokens, so a random model's output always completes the regex.
LIMITS = SchemaLimits(max_note_chars=20, max_step_chars=40, max_body_steps=3, max_answer_chars=10)
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_LOGGING_LEVEL": "WARNING"}


def use_cpu_env() -> None:
    os.environ.update(VLLM_ENV)


def engine_settings(model: Path, **kw: object) -> Settings:
    base: dict[str, object] = {
        "engine": "vllm",
        "model": str(model),
        "dtype": "float32",
        "max_model_len": 4096,
        "max_num_seqs": 8,
        "max_num_batched_tokens": 4096,
        "enforce_eager": True,
        "reasoning_parser": "qwen3",
        "sampling": SAMPLING,
        "max_attempts": 2,
        "cache_path": None,
        "answer_workers": 1,
        "schema_limits": LIMITS,
    }
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def job(request_id: str, *, sampling: Sampling = SAMPLING, regex: bool = True) -> Job:
    req = CritiqueRequest.model_validate({**REQUEST, "student_solution": None, "steps": STEPS})
    messages = critic_messages(
        problem=req.problem,
        steps=STEPS,
        student_answer=None,
        reference_answer="132",
        reference_solution=None,
        mode=FeedbackMode.splice,
    )
    return Job(
        request_id=request_id,
        messages=messages,
        request=req,
        steps=STEPS,
        student_answer=None,
        mode=FeedbackMode.splice,
        sampling=sampling,
        schema_regex=schema_regex(len(STEPS), limits=LIMITS) if regex else None,
    )
