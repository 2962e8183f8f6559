"""Trainer configuration: TRL-style YAML, overrides, the shipped paper recipe, and the resolved-config dump."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import REPO
from trainer.config import load_config, parse_overrides, save_config
from trainer.train import _trl_args


@pytest.mark.parametrize("condition", ["stepalign", "refsol", "grpo"])
def test_paper_configs_hold_the_recipe(condition: str, tmp_path: Path) -> None:
    config = load_config(REPO / "configs" / "paper" / f"{condition}.yaml")
    assert config.condition == condition and config.model == "Qwen/Qwen3-1.7B"
    assert (config.lora.r, config.lora.alpha) == (64, 128) and len(config.lora.target_modules) == 7
    assert not config.student_thinking
    trl = config.trl
    assert trl["learning_rate"] == 5e-6 and trl["temperature"] == 1.1 and trl["max_completion_length"] == 2048
    assert trl["num_train_epochs"] == 7 and trl["per_device_train_batch_size"] * 4 == 32
    assert trl["num_generations"] == (8 if condition == "grpo" else 1)
    if condition != "grpo":
        assert config.teacher_thinking and trl["teacher_model_kind"] == "base"
        assert trl["distillation_mode"] == "full_logits" and trl["distillation_alpha"] == 0.0
    # Every TRL key is a real field of its config class (on this CPU machine without bf16).
    config.trl |= {"bf16": False, "gradient_checkpointing": False}
    config.output_dir = tmp_path
    args = _trl_args(config, "grpo" if condition == "grpo" else "sdpo")
    assert args.learning_rate == 5e-6 and args.num_generations == (8 if condition == "grpo" else 1)


def test_overrides_and_unknown_keys(tmp_path: Path) -> None:
    base = {"model": "m", "data": {"train": "t.jsonl"}}
    over = parse_overrides(["lora.r=8", "max_steps=3", "critic.urls=[http://a, http://b]", "condition=refsol"])
    config = load_config(None, {**base, **over})
    assert config.lora.r == 8 and config.trl["max_steps"] == 3 and config.condition == "refsol"
    assert config.critic.urls == ["http://a", "http://b"]
    with pytest.raises(ValueError, match="not key=value"):
        parse_overrides(["max_steps"])
    with pytest.raises(ValidationError):
        load_config(None, {**base, "lora": {"rank": 8}})  # our sections reject typos
    path = save_config(config, tmp_path)
    assert json.loads(path.read_text())["trl"]["max_steps"] == 3
