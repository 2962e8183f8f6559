"""The critic service's configuration: each field documented once, resolved CLI > environment > config file >
defaults. Environment variables take the prefix STEPALIGN_ (STEPALIGN_PORT=9000, STEPALIGN_API_KEYS='["k1"]')."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from critic_service.engines.base import Sampling
from shared.critique_text import SchemaLimits

EngineName = Literal["checker", "vllm", "openai", "transformers"]

# QwQ-32B's recommended sampling (its generation_config); in-process vLLM applies none, so it is set explicitly.
QWQ_SAMPLING = Sampling(temperature=0.6, top_p=0.95, top_k=40, min_p=0.0, max_tokens=16384, thinking_budget=12288)


class Settings(BaseSettings):
    """Everything `stepalign-critic serve` can be told."""

    model_config = SettingsConfigDict(env_prefix="STEPALIGN_", extra="forbid", validate_default=True)

    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind (0 = any free port).")
    engine: EngineName | None = Field(
        default=None,
        description="checker, vllm, openai or transformers; default: vllm if a model is given, else checker.",
    )
    model: str | None = Field(default=None, description="Model name or local path (vllm, transformers, openai).")
    served_model_name: str | None = Field(default=None, description="Name reported in critiques; default: model.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs per model replica (vllm).")
    gpu_memory_utilization: float = Field(default=0.90, gt=0.0, le=1.0, description="vLLM's share of GPU memory.")
    max_model_len: int | None = Field(default=None, ge=256, description="Context length (vllm); default: the model's.")
    max_num_seqs: int = Field(default=64, ge=1, description="Sequences vLLM schedules at once.")
    max_num_batched_tokens: int = Field(default=16384, ge=256, description="Tokens vLLM schedules per step.")
    enable_prefix_caching: bool = Field(default=True, description="Reuse the KV cache of shared prompt prefixes.")
    reasoning_parser: str | None = Field(
        default="deepseek_r1",
        description="vLLM reasoning parser that splits the <think> part off (QwQ-32B: deepseek_r1; null: none).",
    )
    enforce_eager: bool = Field(default=False, description="vllm: skip graph capture/compilation (faster start).")
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra chat-template arguments, e.g. {enable_thinking: true}."
    )
    openai_thinking_budget: bool = Field(
        default=True,
        description="openai engine: send `thinking_token_budget` (needs the server's --reasoning-parser).",
    )
    structured_outputs: bool = Field(
        default=True, description="Constrain the text after </think> to the critique schema (vllm, openai)."
    )
    schema_limits: SchemaLimits = Field(
        default_factory=SchemaLimits, description="Bounds of the structured-output critique regex."
    )
    dtype: str = Field(default="auto", description="Weights dtype (vllm, transformers).")
    openai_base_url: str | None = Field(default=None, description="Base URL of an OpenAI-compatible server.")
    openai_api_key: SecretStr | None = Field(default=None, description="Key for that server; never logged.")
    device: str = Field(default="auto", description="transformers engine: cpu, cuda or auto.")
    sampling: Sampling = Field(default_factory=Sampling, description="Critic decoding parameters.")
    qwq_sampling: bool = Field(
        default=False, description="Use QwQ-32B's recommended sampling instead of `sampling` (greedy by default)."
    )
    max_attempts: int = Field(default=3, ge=1, le=10, description="Generations tried before answering 502.")
    fidelity_threshold: float = Field(default=0.9, ge=0.0, le=1.0, description="Scribe mode: verbatim share needed.")
    repair_near_copies: bool = Field(default=True, description="Scribe mode: restore near-verbatim copies exactly.")
    request_timeout_s: float = Field(default=600.0, gt=0, description="Deadline for one critique, all attempts.")
    max_concurrency: int = Field(default=64, ge=1, description="Critiques in progress at once.")
    max_queue: int = Field(default=1024, ge=0, description="Critiques waiting beyond that before answering 503.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Largest accepted request body.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Accepted bearer keys (a list, or k1,k2 in the environment); empty = no auth."
    )
    api_keys_file: Path | None = Field(default=None, description="File with one accepted key per line.")
    metrics_public: bool = Field(default=True, description="Serve /metrics without a key.")
    cache_path: Path | None = Field(
        default=Path(".stepalign-cache/critiques.sqlite"), description="SQLite result cache; null disables it."
    )
    answer_workers: int = Field(default=2, ge=1, description="Processes for math-verify answer checks.")
    answer_timeout_s: int = Field(default=3, ge=1, description="math-verify's own budget per parse/verify.")
    log_level: str = Field(default="info", description="Log level.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):  # STEPALIGN_API_KEYS=k1,k2 as well as a JSON list
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def engine_name(self) -> EngineName:
        if self.engine is not None:
            return self.engine
        if self.openai_base_url:
            return "openai"
        return "vllm" if self.model else "checker"

    @property
    def effective_sampling(self) -> Sampling:
        return QWQ_SAMPLING if self.qwq_sampling else self.sampling

    def keys(self) -> list[str]:
        """All accepted API keys (inline and from the keys file)."""
        keys = [k.get_secret_value() for k in self.api_keys]
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            keys += [x.strip() for x in lines if x.strip() and not x.lstrip().startswith("#")]
        return keys

    def public_dump(self) -> dict[str, Any]:
        """The resolved settings with every secret masked, for logs and /v1/info."""
        data = self.model_dump(mode="json")
        data["api_keys"] = ["***"] * len(self.api_keys)
        if self.openai_api_key is not None:
            data["openai_api_key"] = "***"
        return data


def read_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON mapping of settings."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Resolve settings: `overrides` (the CLI) > STEPALIGN_* environment > `config` file > defaults."""
    from_env = Settings()
    merged: dict[str, Any] = read_config_file(config) if config is not None else {}
    merged.update({name: getattr(from_env, name) for name in from_env.model_fields_set})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**merged)
