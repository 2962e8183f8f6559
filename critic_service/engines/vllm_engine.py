"""The `vllm` engine: an in-process `AsyncLLM` (the default when a model is given).

What in-process vLLM does not do by itself, and this engine does:
- sampling is set explicitly on every request (in-process vLLM applies no generation_config, and its
  `max_tokens` defaults to 16);
- the critique schema is enforced with structured outputs (a regex through `StructuredOutputsParams`), which the
  reasoning parser applies only after `</think>`; a thinking-token budget forces `</think>` in time;
- `max_num_seqs` / `max_num_batched_tokens` are explicit, prefix caching is on (the long critic prompt is shared
  by every critique of a run);
- cancelling `generate` aborts the request in the engine; `close` shuts the engine processes down.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

from critic_service.engines.base import Generation, Job
from critic_service.errors import EngineFailure, InvalidRequest
from critic_service.settings import Settings
from shared.schemas import Usage

_END_MARKERS = ("<|im_end|>", "<|endoftext|>")
_THINK_END = "</think>"


class VLLMEngine:
    name = "vllm"

    def __init__(self, settings: Settings) -> None:
        if not settings.model:
            raise ValueError("the vllm engine needs --model (a hub name or a local folder)")
        self.settings = settings
        self.model = settings.served_model_name or settings.model
        self._engine: Any = None
        self._tokenizer: Any = None
        self._think_end_id: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> VLLMEngine:
        return cls(settings)

    def engine_args(self) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs

        s = self.settings
        kwargs: dict[str, Any] = {
            "model": s.model,
            "dtype": s.dtype,
            "tensor_parallel_size": s.tensor_parallel_size,
            "gpu_memory_utilization": s.gpu_memory_utilization,
            "max_num_seqs": s.max_num_seqs,
            "max_num_batched_tokens": s.max_num_batched_tokens,
            "enable_prefix_caching": s.enable_prefix_caching,
            "reasoning_parser": s.reasoning_parser or "",
            "enforce_eager": s.enforce_eager,
            "seed": s.sampling.seed or 0,
        }
        if s.served_model_name:
            kwargs["served_model_name"] = [s.served_model_name]
        if s.max_model_len:
            kwargs["max_model_len"] = s.max_model_len
        return AsyncEngineArgs(**kwargs)

    async def start(self) -> None:
        # Loading takes minutes for a large model: a thread keeps the event loop answering /healthz meanwhile.
        # An AsyncLLM built outside a running loop starts its output tasks on the first request, in this loop.
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        from transformers import AutoTokenizer
        from vllm.v1.engine.async_llm import AsyncLLM

        self._tokenizer = AutoTokenizer.from_pretrained(self.settings.model)
        think_end = self._tokenizer.convert_tokens_to_ids(_THINK_END)
        self._think_end_id = (
            think_end if isinstance(think_end, int) and think_end != self._tokenizer.unk_token_id else None
        )
        self._engine = AsyncLLM.from_engine_args(self.engine_args())

    async def ready(self) -> bool:
        if self._engine is None:
            return False
        try:
            await self._engine.check_health()
        except Exception:
            return False
        return True

    def num_unfinished(self) -> int:
        """Requests the engine is still working on (running or waiting)."""
        return int(self._engine.get_num_unfinished_requests()) if self._engine is not None else 0

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
            gc.collect()

    def _prompt(self, job: Job) -> str:
        prompt: str = self._tokenizer.apply_chat_template(
            job.messages, tokenize=False, add_generation_prompt=True, **self.settings.chat_template_kwargs
        )
        return prompt

    def _sampling(self, job: Job) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        s = job.sampling
        kwargs: dict[str, Any] = {
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "min_p": s.min_p,
            "repetition_penalty": s.repetition_penalty,
            "max_tokens": s.max_tokens,
            "seed": s.seed,
            "skip_special_tokens": False,  # keep </think> in the text so it can be split off exactly
        }
        if s.thinking_budget is not None and self.settings.reasoning_parser:
            kwargs["thinking_token_budget"] = s.thinking_budget
        if self.settings.structured_outputs and job.schema_regex:
            kwargs["structured_outputs"] = StructuredOutputsParams(regex=job.schema_regex)
        return SamplingParams(**kwargs)

    def _split(self, text: str, token_ids: list[int]) -> tuple[str, str | None, int]:
        for marker in _END_MARKERS:
            text = text.replace(marker, "")
        if _THINK_END not in text:
            # No </think>: with a reasoning parser the whole output was reasoning (the budget ran out late).
            return (text, None, 0) if not self.settings.reasoning_parser else ("", text, len(token_ids))
        reasoning, answer = text.rsplit(_THINK_END, 1)
        n_reasoning = 0
        if self._think_end_id is not None and self._think_end_id in token_ids:
            n_reasoning = len(token_ids) - 1 - token_ids[::-1].index(self._think_end_id)
        return answer.strip(), reasoning.replace("<think>", "").strip(), n_reasoning

    async def generate(self, job: Job) -> Generation:
        if self._engine is None:
            raise EngineFailure("the vllm engine is not running")
        final = None
        try:
            async for out in self._engine.generate(self._prompt(job), self._sampling(job), request_id=job.request_id):
                final = out
        except ValueError as exc:  # VLLMValidationError: e.g. a prompt longer than the model's context
            raise InvalidRequest(f"the critic model cannot take this request: {exc}") from exc
        except asyncio.CancelledError:
            # vLLM aborts a request whose consumer goes away; say so explicitly all the same.
            with contextlib.suppress(Exception):
                await self._engine.abort(job.request_id)
            raise
        if final is None or not final.outputs:
            raise EngineFailure("vllm returned no output")
        completion = final.outputs[0]
        ids = list(completion.token_ids)
        text, reasoning, n_reasoning = self._split(completion.text, ids)
        usage = Usage(
            prompt_tokens=len(final.prompt_token_ids or []), completion_tokens=len(ids), reasoning_tokens=n_reasoning
        )
        return Generation(text=text, reasoning=reasoning, usage=usage)
