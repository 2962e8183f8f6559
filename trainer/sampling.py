"""Sample solutions from a model: vLLM when it is available (on a GPU, or when asked for), else transformers.

A LoRA run's checkpoint (an adapter folder) is merged into its base model first (trainer/checkpoints.py).
Both backends sample with exactly the settings given here: transformers gets a complete GenerationConfig (a model's
own generation_config, e.g. Qwen3's top_k=20 / top_p=0.95, would otherwise fill in what is not passed), and vLLM
gets explicit SamplingParams. The defaults are TRL's training defaults (no top-k, no top-p cut).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.prompts import student_prompt
from trainer.contexts import chat

Sampler = Callable[[list[str], int], list[list[str]]]  # (problems, k) -> k solutions per problem


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 1.1  # 0: greedy
    top_p: float = 1.0  # 1.0: off
    top_k: int = 0  # 0: off
    max_new_tokens: int = 2048
    batch_size: int = 8  # problems per generate call (transformers)
    seed: int = 0
    thinking: bool = False


def pick_backend(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        try:
            import vllm  # noqa: F401

            return "vllm"
        except ImportError:
            pass
    return "transformers"


def generation_config(s: SamplingSettings, *, eos_token_id: Any, pad_token_id: int | None) -> Any:
    """A complete transformers GenerationConfig for `s`: nothing is left for the model's own config to fill."""
    from transformers import GenerationConfig

    sample = s.temperature > 0
    return GenerationConfig(
        do_sample=sample,
        temperature=s.temperature if sample else 1.0,
        top_p=s.top_p if sample else 1.0,
        top_k=s.top_k if sample else 0,
        min_p=None,
        repetition_penalty=1.0,
        max_new_tokens=s.max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def transformers_sampler(
    model_path: str, s: SamplingSettings, progress: Callable[[int], None] | None = None
) -> Sampler:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm: Any = AutoModelForCausalLM.from_pretrained(model_path)
    lm = lm.to(device).eval()
    config = generation_config(s, eos_token_id=lm.generation_config.eos_token_id, pad_token_id=tok.pad_token_id)

    def sample(problems: list[str], k: int) -> list[list[str]]:
        out: list[list[str]] = []
        torch.manual_seed(s.seed)
        n = k if config.do_sample else 1  # greedy decoding gives one answer: repeat it k times
        run_config = copy.deepcopy(config)
        run_config.num_return_sequences = n  # in the config: transformers deprecates mixing it with kwargs
        for i in range(0, len(problems), s.batch_size):
            chunk = problems[i : i + s.batch_size]
            prompts = [chat(tok, student_prompt(p), thinking=s.thinking) for p in chunk]
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.inference_mode():
                gen = lm.generate(**enc, generation_config=run_config)
            texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            out.extend((texts[j * n : (j + 1) * n] * k)[:k] for j in range(len(chunk)))
            if progress is not None:
                progress(len(chunk))
        return out

    return sample


def vllm_sampler(model_path: str, s: SamplingSettings, progress: Callable[[int], None] | None = None) -> Sampler:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    tok = AutoTokenizer.from_pretrained(model_path)
    llm = LLM(model=model_path, seed=s.seed, enable_prefix_caching=True)

    def sample(problems: list[str], k: int) -> list[list[str]]:
        params = SamplingParams(
            n=k,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k if s.top_k > 0 else -1,
            min_p=0.0,
            repetition_penalty=1.0,
            max_tokens=s.max_new_tokens,
            seed=s.seed,
        )
        prompts = [chat(tok, student_prompt(p), thinking=s.thinking) for p in problems]
        outputs = llm.generate(prompts, params, use_tqdm=True)
        if progress is not None:
            progress(len(problems))
        return [[c.text for c in o.outputs] for o in outputs]

    return sample


def make_sampler(
    model_path: str, backend: str, s: SamplingSettings, progress: Callable[[int], None] | None = None
) -> Sampler:
    from trainer.checkpoints import plain_model

    model_path = plain_model(model_path)  # a LoRA checkpoint: its adapter merged into the base, once
    chosen = pick_backend(backend)
    if chosen == "vllm":
        return vllm_sampler(model_path, s, progress)
    if chosen == "transformers":
        return transformers_sampler(model_path, s, progress)
    raise ValueError(f"unknown sampling backend {backend!r}; expected auto, vllm or transformers")
