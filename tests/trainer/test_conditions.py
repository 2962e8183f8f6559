"""Tiny-model tests of the three conditions on TRL (model and character tokenizer built offline): one step
really changes the trained weights; the teacher prompt of a stepalign rollout holds that rollout's critique and
no other's; refsol's holds the reference; a failed critique masks only its rollout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from shared.client import CriticError
from shared.schemas import Critique, CritiqueRequest, ErrorBody, ErrorCode, ErrorInfo
from tests.servers import ServerProcess
from tests.trainer.runs import small_config
from trainer.critic_client import CriticSettings, TrainerCritic
from trainer.data import load_problems
from trainer.outcomes import CriticUnavailable
from trainer.train import build

pytestmark = pytest.mark.slow


def _trainable(trainer: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def _capture(builder: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    inner = builder.build

    def spy(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = inner(*args, **kwargs)
        seen.append(out)
        return out

    builder.build = spy
    return seen


def _capture_inputs(builder: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    inner = builder.build

    def spy(output: Any, prompts: Any, rewards: Any, feedbacks: Any = None) -> dict[str, Any]:
        seen.append({"output": output, "feedbacks": feedbacks})
        return inner(output, prompts, rewards, feedbacks=feedbacks)

    builder.build = spy
    return seen


def _length_reward(prompts: list[Any], completions: list[str], **kw: Any) -> list[float]:
    # A random tiny model never answers right, so every binary reward is 0 and GRPO's advantage with it; this
    # fake gives the group reward variance so a step has a gradient.
    median = sorted(len(c) for c in completions)[len(completions) // 2]
    return [1.0 if len(c) >= median else 0.0 for c in completions]


@pytest.mark.parametrize("condition", ["stepalign", "refsol", "grpo"])
def test_one_step_changes_the_trained_weights(
    condition: str, root: Path, critic: ServerProcess, tmp_path: Path
) -> None:
    config = small_config(root, condition, tmp_path / "run", critic.url, max_steps=1)
    built = build(config, answer_reward=_length_reward if condition == "grpo" else None)
    before = _trainable(built.trainer)
    assert before and all("lora" in n for n in before)  # LoRA: only adapter weights train
    built.trainer.train()
    after = _trainable(built.trainer)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed, f"{condition}: no trained weight changed"
    if built.critic is not None:
        built.critic.close()


def test_stepalign_prompt_holds_this_rollouts_critique(root: Path, critic: ServerProcess, tmp_path: Path) -> None:
    built = build(small_config(root, "stepalign", tmp_path / "run", critic.url, max_steps=1))
    calls = _capture_inputs(built.builder)
    built.trainer.train()
    builder = built.builder
    assert builder is not None and len(calls) == 1
    critiques, prompts = builder.last_critiques, builder.last_prompts
    assert len(critiques) == len(prompts) == 4 and all(isinstance(c, Critique) for c in critiques)
    feedbacks = [c.feedback for c in critiques if c is not None]
    assert len(set(feedbacks)) == 4  # four different problems, four different critiques
    tok = built.trainer.processing_class
    completions = tok.batch_decode(calls[0]["output"]["completion_ids"], skip_special_tokens=True)
    for i, prompt in enumerate(prompts):
        assert feedbacks[i] in prompt
        assert all(f not in prompt for j, f in enumerate(feedbacks) if j != i)
        critique = critiques[i]
        assert critique is not None and critique.steps.text == completions[i]  # the critique is of this rollout
        assert calls[0]["feedbacks"][i]["critique"] is critique  # carried on the rollout's own context
    built.critic.close()  # type: ignore[union-attr]


def test_refsol_prompt_holds_the_reference(root: Path, tmp_path: Path) -> None:
    config = small_config(root, "refsol", tmp_path / "run", max_steps=1)
    built = build(config)
    built.trainer.train()
    problems = {p.problem: p for p in load_problems(config.data.train)}
    prompts = built.builder.last_prompts  # type: ignore[union-attr]
    assert len(prompts) == 4
    for prompt in prompts:
        owner = [p for text, p in problems.items() if text in prompt]
        assert len(owner) == 1
        assert owner[0].solution in prompt and "=== Reference Solution Begin ===" in prompt
        others = [p.solution for p in problems.values() if p is not owner[0] and p.solution != owner[0].solution]
        assert not any(s in prompt for s in others)


class FlakyCritic(TrainerCritic):
    """The real HTTP critic client, with the critique of rollout `fail_index` (or of all, when None) replaced by
    a failure, as if the service had answered it."""

    def __init__(self, url: str, log: Path, fail_index: int | None) -> None:
        super().__init__(CriticSettings(urls=[url]), log)
        self.fail_index = fail_index

    def critique_many(self, requests: list[CritiqueRequest]) -> list[Critique | CriticError]:
        out = super().critique_many(requests)
        if self.fail_index is None:
            body = ErrorBody(error=ErrorInfo(code=ErrorCode.invalid_critique, message="injected"))
            return [CriticError("502 invalid_critique: injected", status=502, body=body) for _ in out]
        out[self.fail_index] = CriticError("injected: no valid critique", status=502)
        return out


def test_a_failed_critique_masks_only_its_rollout(root: Path, critic: ServerProcess, tmp_path: Path) -> None:
    config = small_config(root, "stepalign", tmp_path / "run", critic.url, max_steps=1)
    fake = FlakyCritic(critic.url, tmp_path / "log.jsonl", fail_index=1)
    built = build(config, critic=fake)
    outputs = _capture(built.builder)
    built.trainer.train()
    assert outputs[0]["self_distillation_mask"].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert built.builder.masked == 1  # type: ignore[union-attr]
    assert built.builder.last_metrics["stepalign/masked_fraction"] == 0.25  # type: ignore[union-attr]
    fake.close()


def test_too_many_failures_stop_the_run(root: Path, critic: ServerProcess, tmp_path: Path) -> None:
    config = small_config(root, "stepalign", tmp_path / "run", critic.url, max_steps=2)
    config.critic.min_rollouts_for_failure_rate = 4
    fake = FlakyCritic(critic.url, tmp_path / "log.jsonl", fail_index=None)
    built = build(config, critic=fake)
    with pytest.raises(CriticUnavailable, match=r"4 of 4 rollouts .* the critic said: invalid_critique x 4"):
        built.trainer.train()
    fake.close()
