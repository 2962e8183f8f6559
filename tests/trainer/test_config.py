"""Trainer configuration: TRL-style YAML, overrides, the shipped paper recipe, the batch arithmetic, and the
validation that runs before any model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import REPO
from trainer.config import TrainConfig, load_config, parse_overrides, save_config
from trainer.train import trl_defaults
from trainer.validate import ConfigError, batch_plan, validate

CPU = {"bf16": False, "gradient_checkpointing": False}


def _paper(condition: str, train: Path, tmp_path: Path, **extra: Any) -> TrainConfig:
    return load_config(
        REPO / "configs" / "paper" / f"{condition}.yaml",
        {"data": {"train": str(train), "test": str(train)}, "output_dir": str(tmp_path / "run"), **CPU, **extra},
    )


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text('{"problem": "Start with 3. Add 4. What is the result?", "answer": "7"}\n')
    return path


@pytest.mark.parametrize("condition", ["stepalign", "refsol", "grpo"])
def test_paper_configs_hold_the_recipe(condition: str, train_file: Path, tmp_path: Path) -> None:
    config = _paper(condition, train_file, tmp_path)
    assert config.condition == condition and config.model == "Qwen/Qwen3-1.7B"
    assert (config.lora.r, config.lora.alpha) == (64, 128) and len(config.lora.target_modules) == 7
    assert not config.student_thinking and config.effective_batch_size == 32 and config.loss_cut_threshold is None
    trl = config.trl
    assert trl["learning_rate"] == 5e-6 and trl["temperature"] == 1.1 and trl["max_completion_length"] == 2048
    assert (trl["top_k"], trl["top_p"]) == (0, 1.0)
    assert trl["num_train_epochs"] == 7 and "gradient_accumulation_steps" not in trl
    assert trl["num_generations"] == (8 if condition == "grpo" else 1)
    if condition != "grpo":
        assert config.teacher_thinking and trl["teacher_model_kind"] == "base"
        assert trl["distillation_mode"] == "full_logits" and trl["distillation_alpha"] == 0.0
    # Every TRL key is a real field of its config class; 4 processes give the paper's 32 prompts per step.
    args, plan = validate(config, trl_defaults(config), processes=4)
    assert args.learning_rate == 5e-6 and args.num_generations == (8 if condition == "grpo" else 1)
    assert plan.prompts == 32 and plan.processes * plan.per_device * plan.accumulation == 32 * plan.rollouts_per_prompt
    assert args.gradient_accumulation_steps == (8 if condition == "grpo" else 1)


def test_batch_plan_follows_the_process_count(train_file: Path, tmp_path: Path) -> None:
    config = _paper("stepalign", train_file, tmp_path)
    assert [batch_plan(config, n).accumulation for n in (1, 2, 4)] == [4, 2, 1]
    grpo = _paper("grpo", train_file, tmp_path)
    assert [batch_plan(grpo, n).accumulation for n in (1, 4, 8)] == [32, 8, 4]
    assert batch_plan(grpo, 1).prompts == batch_plan(config, 1).prompts == 32  # the same problems per step
    with pytest.raises(ConfigError, match="cannot be split"):
        batch_plan(load_config(None, {**config.resolved(), **config.trl, "per_device_train_batch_size": 32}), 3)
    clash = _paper("stepalign", train_file, tmp_path, gradient_accumulation_steps=2)
    with pytest.raises(ConfigError, match="contradicts effective_batch_size"):
        batch_plan(clash, 1)


def _train(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer.cli", "train", *args], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", **(env or {})}, timeout=300,
    )  # fmt: skip


def test_dry_run_reports_the_accumulation(train_file: Path, tmp_path: Path) -> None:
    sets = [f"data.train={train_file}", f"data.test={train_file}", "bf16=false", f"output_dir={tmp_path}/run"]
    common = ["--config", "configs/paper/stepalign.yaml", *(x for s in sets for x in ("--set", s)), "--dry-run"]
    one = _train(*common, "--set", "per_device_train_batch_size=8")
    assert one.returncode == 0, one.stderr
    assert "gradient_accumulation_steps: 4" in one.stdout
    assert "32 prompts x 1 rollouts per optimizer step = 8 per device x 1 processes x 4 accumulation" in one.stdout
    three = _train(*common, "--set", "per_device_train_batch_size=32", env={"WORLD_SIZE": "3"})
    assert three.returncode == 2 and "cannot be split" in three.stderr
    assert "Traceback" not in three.stderr and len(three.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"no_such_trl_key": 1}, "SDPOConfig does not accept the setting"),
        ({"data": {"train": "missing/train.jsonl"}}, "data.train: missing/train.jsonl does not exist"),
        ({"max_context_tokens": 9000}, "more than max_reprompt_len"),
        ({"critic": {"urls": []}}, "condition stepalign needs a critic"),
        ({"condition": "grpo", "loss_cut_threshold": 0.5}, "condition grpo has none"),
    ],
)
def test_config_errors_before_any_model_loads(
    override: dict[str, Any], message: str, train_file: Path, tmp_path: Path
) -> None:
    # The model does not exist: a run that got as far as loading it would fail with another error.
    base = {"model": str(tmp_path / "no-model"), "data": {"train": str(train_file)}, "output_dir": str(tmp_path)}
    config = load_config(None, {**base, "max_reprompt_len": 4096, **override})
    with pytest.raises(ConfigError, match=message):
        validate(config, trl_defaults(config))


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
