"""The trainer's configuration: our fields, documented once, plus any SDPOConfig/GRPOConfig field, TRL-style.

A YAML file holds both kinds side by side; keys that are not ours go to TRL untouched (and TRL rejects typos).
Resolution: `--set key=value` overrides and dedicated flags > the file > defaults. The resolved configuration
is written to the run folder before training starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.client import RetryPolicy
from shared.schemas import FeedbackMode

Condition = Literal["stepalign", "refsol", "grpo"]
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CriticConfig(_Strict):
    urls: list[str] = Field(default=["http://127.0.0.1:8000"], description="Critic replicas (base URLs).")
    api_key_env: str | None = Field(
        default="STEPALIGN_API_KEY", description="Environment variable holding the critic's API key."
    )
    max_concurrency: int = Field(default=64, ge=1, description="Critiques in flight at once, over all replicas.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Retries on 429/5xx/transport errors.")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="TCP connect timeout.")
    read_timeout_s: float = Field(default=900.0, gt=0, description="Time to wait for one critique.")
    feedback_mode: FeedbackMode = Field(default=FeedbackMode.splice, description="splice or scribe.")
    max_failure_rate: float = Field(
        default=0.25, ge=0.0, le=1.0, description="Fail the run when more rollouts than this lack a critique."
    )
    min_rollouts_for_failure_rate: int = Field(
        default=32, ge=1, description="Rollouts seen before the failure rate can stop the run."
    )
    ready_timeout_s: float = Field(
        default=1800.0,
        gt=0,
        description="Longest wait for the critic's /readyz before step 1 (a 32B model loads for minutes).",
    )
    preflight_problems: int = Field(
        default=2, ge=0, description="Training problems critiqued before any model loads, to fail fast (0: none)."
    )


class DataConfig(_Strict):
    train: str = Field(description="Training problems: a .jsonl/.json/.parquet file or a Hugging Face dataset.")
    test: str | None = Field(default=None, description="Held-out problems, same forms.")
    format: Literal["auto", "stepalign", "openmathreasoning", "gsm8k", "math500", "arithmetic"] = Field(
        default="auto", description="Field mapping; auto guesses it from the columns."
    )
    split: str = Field(default="train", description="Split, for Hugging Face datasets.")
    limit: int | None = Field(default=None, ge=1, description="Use only the first N problems.")


class LoraSettings(_Strict):
    enabled: bool = Field(default=True, description="Train a LoRA adapter (the teacher is the adapter-off base).")
    r: int = Field(default=64, ge=1, description="LoRA rank.")
    alpha: int = Field(default=128, ge=1, description="LoRA alpha.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[str] = Field(default_factory=lambda: list(ALL_PROJECTIONS), description="Projections.")


class TrainConfig(_Strict):
    condition: Condition = Field(default="stepalign", description="stepalign, refsol or grpo.")
    model: str = Field(description="The student (and self-teacher): a hub name or a local folder.")
    output_dir: Path = Field(default=Path("runs/stepalign"), description="Run folder.")
    seed: int = Field(default=0, description="Seed of everything.")
    data: DataConfig
    critic: CriticConfig = Field(default_factory=CriticConfig, description="How to reach the critic.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="Parameter-efficient fine-tuning.")
    student_thinking: bool = Field(default=False, description="Chat-template thinking switch for the student.")
    teacher_thinking: bool = Field(default=True, description="Chat-template thinking switch for the teacher.")
    max_context_tokens: int = Field(
        default=1536, ge=16, description="Token budget of the critique/reference in the teacher prompt."
    )
    effective_batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Prompts per optimizer step over all processes (the paper: 32). TRL's gradient_accumulation_steps "
        "follows from it, per_device_train_batch_size, num_generations and the process count; null: as TRL is given.",
    )
    loss_cut_threshold: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="Cut each rollout's distillation loss at the first token the teacher gives a probability below "
        "this (our addition, not the paper's: null = off, the paper's loss on every completion token).",
    )
    trl: dict[str, Any] = Field(default_factory=dict, description="Any SDPOConfig / GRPOConfig field.")

    def resolved(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())


OUR_KEYS = set(TrainConfig.model_fields) - {"trl"}


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs (dotted keys, YAML values) as a nested mapping."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"override {pair!r} is not key=value")
        key, raw = pair.split("=", 1)
        _set_dotted(out, key.strip(), yaml.safe_load(raw))
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a TRL-style YAML (ours + TRL's keys side by side), apply overrides, validate ours."""
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        data = loaded
    data = _merge(data, overrides or {})
    ours = {k: v for k, v in data.items() if k in OUR_KEYS}
    trl = {**data.get("trl", {}), **{k: v for k, v in data.items() if k not in OUR_KEYS and k != "trl"}}
    return TrainConfig(**ours, trl=trl)


def save_config(config: TrainConfig, folder: Path) -> Path:
    """Write the resolved configuration next to the run's outputs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.resolved.json"
    path.write_text(json.dumps(config.resolved(), indent=2) + "\n", encoding="utf-8")
    return path
