"""One training run: data -> TRL trainer for the condition -> train (or resume) -> summary.

The run folder holds `config.resolved.json`, `critiques.jsonl` (stepalign), `metrics.jsonl`, TRL's
`checkpoint-N/` folders (each with `stepalign_state.json`: the critique log's length at that step) and `final/`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig, save_config
from trainer.contexts import chat
from trainer.critic_client import CriticSettings, TrainerCritic
from trainer.data import Problem, load_problems
from trainer.outcomes import CriticOutcomes
from trainer.progress import quiet_progress
from trainer.sdpo import BuilderSettings, CritiqueReward, TeacherContextBuilder, sdpo_trainer_class
from trainer.validate import preflight, preflight_request, validate

log = logging.getLogger("stepalign.trainer")
STATE_FILE = "stepalign_state.json"


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def critique_log_path(output_dir: Path, rank: int) -> Path:
    return output_dir / ("critiques.jsonl" if rank == 0 else f"critiques.rank{rank}.jsonl")


def dataset_rows(problems: list[Problem], tokenizer: Any, *, thinking: bool) -> list[dict[str, Any]]:
    """TRL rows: the student prompt, already in the chat template (so TRL adds none), and the per-problem
    metadata the reward and the builder need, routed through `privileged_context`."""
    from shared.prompts import student_prompt

    return [
        {
            "prompt": chat(tokenizer, student_prompt(p.problem), thinking=thinking),
            "privileged_context": {"id": p.id, "problem": p.problem, "answer": p.answer, "solution": p.solution},
        }
        for p in problems
    ]


def trl_defaults(config: TrainConfig) -> dict[str, Any]:
    """Our defaults for TRL's arguments (the config's own TRL keys override them)."""
    import torch

    defaults: dict[str, Any] = {
        "output_dir": str(config.output_dir),
        "seed": config.seed,
        "report_to": "none",
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 10,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_num_workers": 0,
    }
    if config.condition == "grpo":
        return defaults | {"num_generations": 8}
    return defaults | {
        "num_generations": 1,
        "scale_rewards": "none",
        # The paper's fixed teacher, the initial policy: the LoRA adapter switched off, or without LoRA a frozen
        # copy of the initial model (TRL's "base").
        "teacher_model_kind": "base",
        "use_successful_as_teacher": False,
        "diagnostics_warning_interval": 0,
    }


def _peft(config: TrainConfig) -> Any:
    if not config.lora.enabled:
        return None
    from peft import LoraConfig

    lc = config.lora
    return LoraConfig(
        r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules, task_type="CAUSAL_LM"
    )


def _callbacks(output_dir: Path, critic: TrainerCritic | None) -> list[Any]:
    from transformers import TrainerCallback

    class RunFiles(TrainerCallback):  # type: ignore[misc]
        """metrics.jsonl on every log; the critique log's length into every checkpoint."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            if state.is_world_process_zero and logs:
                with (output_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            folder = output_dir / f"checkpoint-{state.global_step}"
            payload = {"global_step": state.global_step}
            if critic is not None:
                payload["critique_log_bytes"] = critic.log.position()
            name = STATE_FILE if _rank() == 0 else f"stepalign_state.rank{_rank()}.json"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(json.dumps(payload) + "\n", encoding="utf-8")

    return [RunFiles()]


def last_checkpoint(output_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not output_dir.exists():
        return None
    found = get_last_checkpoint(str(output_dir))
    return Path(found) if found else None


@dataclass
class RunSummary:
    condition: str
    steps: int
    rollouts: int
    masked: int
    outcomes: CriticOutcomes
    last_loss: float | None
    seconds: float
    output_dir: str
    batch: str = ""

    def lines(self) -> Iterator[str]:
        yield f"run {self.output_dir}: condition {self.condition}, {self.steps} steps in {self.seconds:.0f} s"
        if self.batch:
            yield self.batch
        if self.condition == "stepalign":
            o = self.outcomes
            cases = ", ".join(f"{k}={v}" for k, v in sorted(o.cases.items())) or "none"
            yield f"critiques by case: {cases}; rollouts without a valid critique: {o.failed} of {o.rollouts}"
            if o.failed:
                yield f"critic errors: {o.most_common_errors()}"
        if self.condition != "grpo":
            rate = self.masked / self.rollouts if self.rollouts else 0.0
            yield f"distillation mask rate: {rate:.1%} ({self.masked} of {self.rollouts} rollouts excluded)"
        yield f"last loss: {self.last_loss if self.last_loss is not None else 'n/a'}"


@dataclass
class Built:
    """A ready-to-train TRL trainer, with our builder and critic client when the condition has them."""

    trainer: Any
    builder: TeacherContextBuilder | None
    critic: Any | None


def _critic_for(config: TrainConfig, checkpoint: Path | None, api_key: str | None) -> TrainerCritic:
    position = None
    if checkpoint is not None:
        state_name = STATE_FILE if _rank() == 0 else f"stepalign_state.rank{_rank()}.json"
        state_path = checkpoint / state_name
        if state_path.exists():
            position = json.loads(state_path.read_text())["critique_log_bytes"]
    c = config.critic
    settings = CriticSettings(
        urls=c.urls,
        api_key=api_key,
        max_concurrency=c.max_concurrency,
        retry=c.retry,
        connect_timeout_s=c.connect_timeout_s,
        read_timeout_s=c.read_timeout_s,
        ready_timeout_s=c.ready_timeout_s,
    )
    return TrainerCritic(settings, critique_log_path(config.output_dir, _rank()), log_position=position)


def _answer_reward() -> Any:
    from shared.answers import AnswerChecker
    from trainer.rewards import binary_rewards

    checker = AnswerChecker()

    def answer_reward(prompts: list[Any], completions: list[Any], **kw: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return binary_rewards(checker, texts, [ctx["answer"] for ctx in kw["privileged_context"]])

    return answer_reward


def build(
    config: TrainConfig,
    *,
    checkpoint: Path | None = None,
    critic_api_key: str | None = None,
    critic: Any = None,
    answer_reward: Any = None,
    args: Any = None,
) -> Built:
    """The trainer for `config.condition` (`args`: TRL's arguments from `validate`, computed here if not given).
    `critic` replaces the HTTP critic client and `answer_reward` the math-verify reward (injection points for
    fault tests)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from transformers import AutoTokenizer

    if args is None:
        args, _ = validate(config, trl_defaults(config))
    out = config.output_dir
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    problems = load_problems(
        config.data.train, fmt=config.data.format, split=config.data.split, limit=config.data.limit
    )
    dataset = Dataset.from_list(dataset_rows(problems, tokenizer, thinking=config.student_thinking))
    common = {"train_dataset": dataset, "processing_class": tokenizer, "peft_config": _peft(config)}
    if config.condition == "grpo":
        from trl import GRPOTrainer

        trainer = GRPOTrainer(
            model=config.model,
            reward_funcs=[answer_reward or _answer_reward()],
            args=args,
            callbacks=_callbacks(out, None),
            **common,
        )
        quiet_progress(trainer)
        return Built(trainer=trainer, builder=None, critic=None)
    reward: Any = answer_reward or _answer_reward()
    if config.condition == "stepalign":
        critic = critic or _critic_for(config, checkpoint, critic_api_key)
        reward = CritiqueReward(critic, config.critic.feedback_mode)
    trainer = sdpo_trainer_class(config.loss_cut_threshold)(
        model=config.model,
        reward_funcs=[reward],
        args=args,
        callbacks=_callbacks(out, critic),
        **common,
    )
    builder = TeacherContextBuilder(
        trainer,
        BuilderSettings(
            condition=config.condition,
            context_budget=config.max_context_tokens,
            teacher_thinking=config.teacher_thinking,
            max_failure_rate=config.critic.max_failure_rate,
            min_rollouts=config.critic.min_rollouts_for_failure_rate,
        ),
        critic.outcomes if critic is not None else None,
    )
    trainer.teacher_context_builder = builder
    quiet_progress(trainer)
    return Built(trainer=trainer, builder=builder, critic=critic)


def _say(line: str) -> None:
    """A progress line for the person running the job (rank 0 prints, the others log)."""
    if _rank() == 0:
        print(line, flush=True)
    else:
        log.info("%s", line)


def _check_critic(config: TrainConfig, critic: TrainerCritic) -> None:
    """Before any model loads: wait for the critic's readiness, then the preflight critiques."""
    critic.wait_ready(progress=_say)
    n = config.critic.preflight_problems
    if n == 0:
        return
    problems = load_problems(config.data.train, fmt=config.data.format, split=config.data.split, limit=n)
    results = critic.critique_many([preflight_request(p.to_json()) for p in problems])
    preflight(results)


def _gathered(trainer: Any, builder: TeacherContextBuilder | None, critic: Any) -> tuple[CriticOutcomes, int, int]:
    """Critic outcomes and mask counts summed over every process of the run."""
    from accelerate.utils import gather_object

    local = {
        "outcomes": critic.outcomes.as_dict() if critic is not None else {},
        "masked": builder.masked if builder is not None else 0,
        "rollouts": builder.rollouts if builder is not None else 0,
    }
    parts = gather_object([local]) if trainer.accelerator.num_processes > 1 else [local]
    outcomes = CriticOutcomes.merged(p["outcomes"] for p in parts)
    return outcomes, sum(p["masked"] for p in parts), sum(p["rollouts"] for p in parts)


def run(config: TrainConfig, *, resume: bool = False, critic_api_key: str | None = None) -> RunSummary:
    """Train one condition end to end; returns the summary printed by the CLI. Everything that can fail without
    a model (configuration, data, the critic's readiness and its preflight) is checked before a model loads."""
    started = time.perf_counter()
    out = config.output_dir
    args, plan = validate(config, trl_defaults(config))
    save_config(config, out)
    _say(plan.describe())
    checkpoint = last_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        log.warning("--resume: no checkpoint in %s, starting from scratch", out)
    critic = _critic_for(config, checkpoint, critic_api_key) if config.condition == "stepalign" else None
    try:
        if critic is not None:
            _check_critic(config, critic)
        built = build(config, checkpoint=checkpoint, critic=critic, args=args)
        trainer, builder = built.trainer, built.builder
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        trainer.save_model(str(out / "final"))
        outcomes, masked, rollouts = _gathered(trainer, builder, critic)
    finally:
        if critic is not None:
            critic.close()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return RunSummary(
        condition=config.condition,
        steps=int(trainer.state.global_step),
        rollouts=rollouts,
        masked=masked,
        outcomes=outcomes,
        last_loss=float(losses[-1]) if losses else None,
        seconds=time.perf_counter() - started,
        output_dir=str(out),
        batch=plan.describe(),
    )
