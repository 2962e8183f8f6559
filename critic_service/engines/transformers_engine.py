"""The `transformers` engine: a local Hugging Face model folder (CPU or GPU), for small models and debugging.

Generation runs on a worker thread (torch releases the GIL), one at a time, so the event loop keeps serving.
Cancelling `generate` sets a flag a stopping criterion checks between tokens, so abandoned work stops early.
No structured outputs here: the service's validation and resampling decide what is accepted.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from critic_service.engines.base import Generation, Job
from critic_service.settings import Settings
from shared.schemas import Usage

_THINK_END = "</think>"


class TransformersEngine:
    name = "transformers"

    def __init__(self, model_path: str, *, device: str = "auto", dtype: str = "auto") -> None:
        self.model = model_path
        self.device = device
        self.dtype = dtype
        self._lock = asyncio.Lock()
        self._tok: Any = None
        self._lm: Any = None

    @classmethod
    def from_settings(cls, s: Settings) -> TransformersEngine:
        if not s.model:
            raise ValueError("the transformers engine needs --model (a local model folder or hub name)")
        return cls(s.model, device=s.device, dtype=s.dtype)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = "auto" if self.dtype == "auto" else getattr(torch, self.dtype)
        self._tok = AutoTokenizer.from_pretrained(self.model)
        lm: Any = AutoModelForCausalLM.from_pretrained(self.model, dtype=dtype)
        self._lm = lm.to(device).eval()

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    async def ready(self) -> bool:
        return self._lm is not None

    async def close(self) -> None:
        self._lm = None
        self._tok = None

    def _generate(self, job: Job, stop: threading.Event) -> Generation:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set()

        s = job.sampling
        prompt = self._tok.apply_chat_template(job.messages, tokenize=False, add_generation_prompt=True)
        inputs = self._tok(prompt, return_tensors="pt").to(self._lm.device)
        kwargs: dict[str, Any] = {"max_new_tokens": s.max_tokens, "repetition_penalty": s.repetition_penalty}
        if s.temperature > 0:
            kwargs |= {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p}
            if s.top_k > 0:
                kwargs["top_k"] = s.top_k
        else:
            kwargs["do_sample"] = False
        if s.seed is not None:
            torch.manual_seed(s.seed)
        with torch.inference_mode():
            out = self._lm.generate(**inputs, stopping_criteria=StoppingCriteriaList([_Cancelled()]), **kwargs)
        new = out[0, inputs["input_ids"].shape[1] :]
        # Keep special tokens while decoding: <think>/</think> are special in some tokenizers; drop only the
        # end-of-turn and padding markers.
        text = self._tok.decode(new, skip_special_tokens=False)
        for marker in {self._tok.eos_token, self._tok.pad_token, "<|im_end|>", "<|endoftext|>"} - {None}:
            text = text.replace(marker, "")
        reasoning = None
        reasoning_tokens = 0
        if _THINK_END in text:
            reasoning, text = text.rsplit(_THINK_END, 1)
            reasoning_tokens = len(self._tok(reasoning)["input_ids"])
        return Generation(
            text=text,
            reasoning=reasoning,
            usage=Usage(
                prompt_tokens=int(inputs["input_ids"].shape[1]),
                completion_tokens=int(new.shape[0]),
                reasoning_tokens=reasoning_tokens,
            ),
        )

    async def generate(self, job: Job) -> Generation:
        stop = threading.Event()
        async with self._lock:
            work = asyncio.ensure_future(asyncio.to_thread(self._generate, job, stop))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                stop.set()  # the thread finishes its current token and returns
                await asyncio.wait({work})
                raise
