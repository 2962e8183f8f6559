"""The critic service's configuration: each field documented once, in `Settings`, and from there reachable as a
CLI flag (`--max-attempts`, `--sampling.temperature`), an environment variable (STEPALIGN_MAX_ATTEMPTS,
STEPALIGN_SAMPLING__TEMPERATURE, or STEPALIGN_SAMPLING='{"temperature": 0.3}') and a key of a YAML/JSON config
file. They resolve CLI > environment > config file > defaults; nested fields merge key by key."""

from __future__ import annotations

import json
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, CliSettingsSource, EnvSettingsSource, NoDecode, SettingsConfigDict

from critic_service.auth import ApiKey, KeyFormatError, parse_key_entries
from critic_service.engines.base import Sampling
from critic_service.ratelimit import RateLimit
from shared.critique_text import SchemaLimits

EngineName = Literal["checker", "vllm", "openai", "transformers"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

# QwQ-32B's recommended sampling (its generation_config); in-process vLLM applies none, so it is set explicitly.
QWQ_SAMPLING = Sampling(temperature=0.6, top_p=0.95, top_k=40, min_p=0.0, max_tokens=16384, thinking_budget=12288)


class Settings(BaseSettings):
    """Everything `stepalign-critic serve` can be told."""

    model_config = SettingsConfigDict(
        env_prefix="STEPALIGN_",
        env_nested_delimiter="__",
        env_parse_none_str="null",
        extra="forbid",
        validate_default=True,
    )

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
    drain_timeout_s: float = Field(
        default=25.0,
        ge=0,
        description="On SIGTERM: seconds in-flight critiques may still run (then 503 not_ready); then the engine "
        "stops. Give the orchestrator's grace period this plus the engine's stop time.",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted bearer keys, `name:key` (a bare key is named key-N); k1,k2 or a JSON list in the "
        "environment. Empty (and no keys file) = no auth. Prefer STEPALIGN_API_KEYS or the keys file: a command "
        "line is visible to every user of the machine.",
    )
    api_keys_file: Path | None = Field(
        default=None, description="File of accepted keys, one `name:key` per line (# starts a comment)."
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description="Allow binding a non-loopback host with no keys (anyone who can reach it may use it).",
    )
    rate_limit: RateLimit = Field(default_factory=RateLimit, description="Quotas of every key (429 beyond them).")
    key_rate_limits: dict[str, RateLimit] = Field(
        default_factory=dict,
        description='Quotas of named keys, replacing `rate_limit` for them: {"trainer": {"tokens_per_min": null}}.',
    )
    metrics_public: bool = Field(default=True, description="Serve /metrics without a key.")
    docs_public: bool = Field(default=True, description="Serve /docs and /openapi.json without a key.")
    cache_path: Path | None = Field(
        default=Path(".stepalign-cache/critiques.sqlite"), description="SQLite result cache; null disables it."
    )
    cache_max_entries: int = Field(
        default=100_000, ge=1, description="Cache size bound; the least recently used critiques are evicted."
    )
    exit_on_load_failure: bool = Field(
        default=True,
        description="Exit (status 3) when the engine fails to load; otherwise keep serving /readyz 'failing'.",
    )
    answer_workers: int = Field(default=2, ge=1, description="Processes for math-verify answer checks.")
    answer_timeout_s: int = Field(default=3, ge=1, description="math-verify's own budget per parse/verify.")
    log_level: LogLevel = Field(default="info", description="Log level.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json: one JSON object per log line (request lines are JSON always)."
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):  # STEPALIGN_API_KEYS=k1,k2 as well as a JSON list
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

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

    def named_keys(self) -> list[ApiKey]:
        """All accepted API keys with their names (inline first, then the keys file); `KeyFormatError` or
        `OSError` for a malformed entry or an unreadable file."""
        entries = [(f"api_keys[{i}]", k.get_secret_value()) for i, k in enumerate(self.api_keys)]
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            entries += [
                (f"{self.api_keys_file}:{n}", line)
                for n, line in enumerate(lines, 1)
                if line.strip() and not line.lstrip().startswith("#")
            ]
        return parse_key_entries(entries)

    def keys(self) -> list[str]:
        """The accepted key strings (for callers that only compare)."""
        return [k.secret for k in self.named_keys()]

    def public_dump(self) -> dict[str, Any]:
        """The resolved settings with every secret masked, for logs."""
        data = self.model_dump(mode="json")
        try:
            inline = parse_key_entries([(str(i), k.get_secret_value()) for i, k in enumerate(self.api_keys)])
            data["api_keys"] = [f"{k.name}:***" for k in inline]
        except KeyFormatError:
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


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_settings(cli: dict[str, Any] | None = None, config: Path | None = None) -> Settings:
    """CLI values > STEPALIGN_* environment > `config` file > defaults, merged field by field (nested too)."""
    merged = read_config_file(config) if config is not None else {}
    merged = _deep_merge(merged, dict(EnvSettingsSource(Settings)()))
    merged = _deep_merge(merged, cli or {})
    return Settings(**merged)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """`resolve_settings` with top-level overrides (the CLI's values; None = not given)."""
    return resolve_settings({k: v for k, v in overrides.items() if v is not None}, config)


def add_settings_arguments(parser: ArgumentParser) -> CliSettingsSource[Settings]:
    """One flag per `Settings` field (nested ones dotted: --sampling.temperature), with its description as help;
    the returned source turns the parsed arguments back into setting values."""
    return CliSettingsSource(
        Settings,
        root_parser=parser,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_hide_none_type=True,
        cli_avoid_json=True,
        cli_parse_none_str="null",
        cli_use_class_docs_for_groups=False,
    )


def cli_values(source: CliSettingsSource[Settings], args: Namespace) -> dict[str, Any]:
    """The settings given on the command line (only those given)."""
    values = source(parsed_args=args)()
    return {k: v for k, v in values.items() if k in Settings.model_fields}
