"""Build the engine a configuration asks for; heavy engine modules are imported only when chosen."""

from __future__ import annotations

from critic_service.engines.base import Engine
from critic_service.settings import Settings


def build_engine(settings: Settings) -> Engine:
    name = settings.engine_name
    if name == "checker":
        from critic_service.engines.checker import CheckerEngine

        return CheckerEngine()
    if name == "openai":
        from critic_service.engines.openai_engine import OpenAIEngine

        return OpenAIEngine.from_settings(settings)
    if name == "vllm":
        from critic_service.engines.vllm_engine import VLLMEngine

        return VLLMEngine.from_settings(settings)
    if name == "transformers":
        from critic_service.engines.transformers_engine import TransformersEngine

        return TransformersEngine.from_settings(settings)
    raise ValueError(f"unknown engine {name!r}; expected checker, vllm, openai or transformers")
