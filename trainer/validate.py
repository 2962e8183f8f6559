"""Fail fast: everything about a run that can be checked before any model loads.

`validate` checks the whole configuration (TRL's keys against TRL's own config class, data files, cross-field
limits, the batch arithmetic) and returns the TRL arguments and the batch plan; `preflight` then asks the critic
about a few training problems, so a critic that cannot judge this data stops the run at once with its own error
code and message, not after several training steps.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.client import CriticError
from shared.schemas import Critique, CritiqueRequest
from trainer.config import TrainConfig
from trainer.outcomes import CriticUnavailable, error_code

log = logging.getLogger("stepalign.trainer")
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
# Room for the teacher prompt's own words around the context (instructions, chat template, the problem's framing).
PROMPT_ALLOWANCE = 256


class ConfigError(ValueError):
    """The run's configuration cannot work; the message names the setting and what is allowed."""


@dataclass(frozen=True)
class BatchPlan:
    """How many prompts and rollouts one optimizer step takes, and how they are split."""

    prompts: int
    rollouts_per_prompt: int
    per_device: int  # rollouts per device per micro-step (TRL's per_device_train_batch_size)
    processes: int
    accumulation: int

    def describe(self) -> str:
        return (
            f"batch: {self.prompts} prompts x {self.rollouts_per_prompt} rollouts per optimizer step = "
            f"{self.per_device} per device x {self.processes} processes x {self.accumulation} accumulation steps"
        )


def world_size() -> int:
    """The number of training processes (accelerate/torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def batch_plan(config: TrainConfig, processes: int) -> BatchPlan:
    """The batch arithmetic; with `effective_batch_size` set, the accumulation that makes it exact."""
    trl = config.trl
    g = int(trl.get("num_generations", 8 if config.condition == "grpo" else 1))
    per_device = int(trl.get("per_device_train_batch_size", 8))
    if config.effective_batch_size is None:
        accumulation = int(trl.get("gradient_accumulation_steps", 1))
        rollouts = per_device * processes * accumulation
        return BatchPlan(rollouts // max(1, g), g, per_device, processes, accumulation)
    rollouts = config.effective_batch_size * g
    micro = per_device * processes
    if rollouts % micro:
        raise ConfigError(
            f"effective_batch_size={config.effective_batch_size} prompts x {g} rollouts = {rollouts} rollouts per "
            f"step cannot be split into per_device_train_batch_size={per_device} x {processes} processes; choose a "
            f"per-device batch so that {per_device} x {processes} divides {rollouts}"
        )
    given = trl.get("gradient_accumulation_steps")
    accumulation = rollouts // micro
    if given is not None and int(given) != accumulation:
        raise ConfigError(
            f"gradient_accumulation_steps={given} contradicts effective_batch_size={config.effective_batch_size} "
            f"({accumulation} with {per_device} per device x {processes} processes); set only one of them"
        )
    return BatchPlan(config.effective_batch_size, g, per_device, processes, accumulation)


def _check_data(source: str, field: str) -> None:
    path = Path(source)
    looks_local = path.suffix in LOCAL_SUFFIXES or source.startswith((".", "/", "~"))
    if looks_local and not path.expanduser().exists():
        raise ConfigError(f"{field}: {source} does not exist (make it with `stepalign-train prepare-data`)")


def trl_args(config: TrainConfig, plan: BatchPlan, defaults: dict[str, Any]) -> Any:
    """TRL's SDPOConfig/GRPOConfig from our defaults and the config's TRL keys; an unknown or invalid key is a
    `ConfigError` naming it."""
    values = defaults | config.trl | {"gradient_accumulation_steps": plan.accumulation}
    if config.condition == "grpo":
        from trl import GRPOConfig as Args
    else:
        from trl.experimental.sdpo import SDPOConfig as Args
    try:
        return Args(**values)
    except TypeError as exc:  # an unknown keyword
        raise ConfigError(f"{Args.__name__} does not accept the setting: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{Args.__name__}: {exc}") from exc


def validate(config: TrainConfig, defaults: dict[str, Any], processes: int | None = None) -> tuple[Any, BatchPlan]:
    """Check the whole configuration; return (TRL arguments, batch plan). Raises `ConfigError`."""
    _check_data(config.data.train, "data.train")
    if config.data.test:
        _check_data(config.data.test, "data.test")
    if config.condition == "stepalign" and not config.critic.urls:
        raise ConfigError("condition stepalign needs a critic: set critic.urls or pass --critic-url")
    if config.loss_cut_threshold is not None and config.condition == "grpo":
        raise ConfigError("loss_cut_threshold applies to the distillation loss; condition grpo has none")
    plan = batch_plan(config, processes or world_size())
    args = trl_args(config, plan, defaults)
    if config.condition != "grpo":
        need = config.max_context_tokens + int(args.max_prompt_length or 0) + PROMPT_ALLOWANCE
        if need > args.max_reprompt_len:
            raise ConfigError(
                f"the teacher prompt needs up to max_context_tokens={config.max_context_tokens} + "
                f"max_prompt_length={args.max_prompt_length} + {PROMPT_ALLOWANCE} for its own words = {need} tokens, "
                f"more than max_reprompt_len={args.max_reprompt_len} (TRL would cut the question off the left)"
            )
    return args, plan


def preflight_request(problem: dict[str, str]) -> CritiqueRequest:
    """A deliberately wrong one-step attempt: a critic that can judge the problem returns a valid correction."""
    wrong = "1" if problem.get("answer", "").strip() == "0" else "0"
    return CritiqueRequest(
        problem=problem["problem"],
        reference_answer=problem.get("answer") or None,
        reference_solution=problem.get("solution") or None,
        student_solution=f"<step_1>I could not solve this.</step_1>\n<answer>\\boxed{{{wrong}}}</answer>",
        request_id=f"preflight:{problem.get('id', '')}",
    )


def preflight(results: list[Critique | CriticError]) -> None:
    """Stop (`CriticUnavailable`) if the critic cannot judge this data: any 4xx (the critic says the request
    itself is wrong for it; retrying cannot help), or no valid critique at all."""
    failures = [r for r in results if isinstance(r, CriticError)]
    if not failures:
        return
    caller = [f for f in failures if f.status is not None and 400 <= f.status < 500]
    if caller or len(failures) == len(results):
        first = (caller or failures)[0]
        codes = Counter(error_code(f) for f in failures)
        listed = ", ".join(f"{c} x {n}" for c, n in codes.most_common())
        raise CriticUnavailable(
            f"preflight: the critic could not critique {len(failures)} of {len(results)} training problems "
            f"({listed}): {first}"
        )
    log.warning("preflight: %d of %d critiques failed: %s", len(failures), len(results), failures[0])
