"""Set-up shared by the trainer tests: a tiny model, arithmetic-chain problems, and a small-run config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config import TrainConfig, load_config
from trainer.data import write_problems
from trainer.toy.problems import make_problems
from trainer.toy.tiny_model import build_tiny_qwen3

TINY_TRL: dict[str, Any] = {
    "max_steps": 3,
    "per_device_train_batch_size": 4,
    "max_completion_length": 40,
    "max_prompt_length": 1024,
    "learning_rate": 1e-3,
    "save_steps": 1,
    "temperature": 1.1,
    "disable_tqdm": True,
}


def workspace(root: Path, n_problems: int = 24) -> tuple[Path, Path]:
    """(model folder, training file) under `root`, built once."""
    model = build_tiny_qwen3(root / "tiny")
    data = root / "train.jsonl"
    if not data.exists():
        write_problems(make_problems(n_problems, seed=0), data)
    return model, data


def small_config(root: Path, condition: str, out: Path, critic_url: str | None = None, **trl: Any) -> TrainConfig:
    model, data = workspace(root)
    overrides: dict[str, Any] = {
        "condition": condition,
        "model": str(model),
        "output_dir": str(out),
        "data": {"train": str(data)},
        "lora": {"r": 8, "alpha": 16},
        "max_context_tokens": 512,
        **TINY_TRL,
        **trl,
    }
    if condition == "grpo":
        overrides.setdefault("num_generations", 4)
        overrides.pop("max_prompt_length")  # an SDPOConfig field that GRPOConfig does not have
    if critic_url:
        overrides["critic"] = {"urls": [critic_url], "min_rollouts_for_failure_rate": 1000}
    return load_config(None, overrides)


def write_yaml(config: TrainConfig, path: Path) -> Path:
    import yaml

    data = config.resolved()
    trl = data.pop("trl")
    path.write_text(yaml.safe_dump({**data, **trl}))
    return path
