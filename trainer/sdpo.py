"""A thin adapter on `trl.experimental.sdpo.SDPOTrainer` (trl==1.16.0): our teacher contexts at its seam.

TRL's seam: `SDPOTrainer.__init__` ends by assigning `self.teacher_context_builder`, and
`_prepare_training_batch` calls `builder.build(batch, prompts, rewards, feedbacks=privileged_contexts)` after the
reward functions, then reads `builder.last_metrics`. We replace that builder per condition:
- `stepalign`: the critic's `feedback` on this very rollout (the reward function asked the critic, once per
  rollout, and left the result in a `StepCritiques` the builder reads);
- `refsol`: the problem's reference solution.
A rollout without a valid critique gets `self_distillation_mask = 0`: excluded from the loss, counted, logged;
the run stops only past `max_failure_rate`. Everything else (losses, teacher kinds, LoRA, accelerate,
checkpoints) is TRL's. `tests/trainer/test_trl_seam.py` fails loudly if the seam changes.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from shared.client import CriticError
from shared.schemas import Critique, CritiqueRequest, FeedbackMode
from trainer.contexts import teacher_context
from trainer.critic_client import TrainerCritic
from trainer.rewards import critique_reward


class CriticUnavailable(RuntimeError):
    """Too many rollouts got no valid critique: training on the rest would be training on a biased subset."""


@dataclass
class StepCritiques:
    """The critiques of the rollouts the reward function just scored, for the builder of the same step."""

    completions: list[str] = field(default_factory=list)
    results: list[Critique | CriticError] = field(default_factory=list)
    cases: Counter[str] = field(default_factory=Counter)
    rollouts: int = 0
    failed: int = 0


def _local_error(message: str) -> CriticError:
    return CriticError(message, status=422)


class CritiqueReward:
    """The reward function of the stepalign condition: asks the critic about every rollout of the step at once;
    reward 1 for a right final answer (case A or B). The critiques are kept for the context builder."""

    __name__ = "critic_reward"

    def __init__(self, critic: TrainerCritic, store: StepCritiques, mode: FeedbackMode) -> None:
        self.critic = critic
        self.store = store
        self.mode = mode

    def _request(self, completion: str, ctx: dict[str, Any]) -> CritiqueRequest | CriticError:
        if not completion.strip():
            return _local_error("empty completion")
        try:
            return CritiqueRequest(
                problem=ctx["problem"],
                reference_answer=ctx.get("answer") or None,
                reference_solution=ctx.get("solution") or None,
                student_solution=completion,
                feedback_mode=self.mode,
                request_id=f"{ctx.get('id', '')}:{uuid.uuid4().hex[:8]}",
            )
        except ValidationError as exc:
            return _local_error(f"rollout cannot be sent to the critic: {exc.errors()[0]['msg']}")

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        contexts: list[dict[str, Any]] = kwargs["privileged_context"]
        state = kwargs.get("trainer_state")
        step = int(state.global_step) if state is not None else 0
        built = [self._request(t, c) for t, c in zip(texts, contexts, strict=True)]
        to_send = [(i, r) for i, r in enumerate(built) if isinstance(r, CritiqueRequest)]
        answers = self.critic.critique_step(step, [r for _, r in to_send])
        results: list[Critique | CriticError] = [
            r if isinstance(r, CriticError) else _local_error("not sent") for r in built
        ]
        for (i, _), got in zip(to_send, answers, strict=True):
            results[i] = got
        self.store.completions = texts
        self.store.results = results
        for r in results:
            self.store.rollouts += 1
            if isinstance(r, CriticError):
                self.store.failed += 1
            else:
                self.store.cases[r.case.value] += 1
        return [critique_reward(r) for r in results]


@dataclass(frozen=True)
class BuilderSettings:
    condition: str  # stepalign | refsol
    context_budget: int
    teacher_thinking: bool
    max_failure_rate: float
    min_rollouts: int


class TeacherContextBuilder:
    """Replaces TRL's `SuccessfulRolloutTeacherContextBuilder`: one teacher prompt per rollout, built from this
    rollout's critique (stepalign) or the problem's reference solution (refsol)."""

    def __init__(self, trainer: Any, settings: BuilderSettings, store: StepCritiques | None = None) -> None:
        self.trainer = trainer
        self.settings = settings
        self.store = store
        self.last_metrics: dict[str, float] = {}
        self.masked = 0
        self.rollouts = 0
        self.last_prompts: list[str] = []  # for inspection and tests

    def _check_failure_rate(self) -> None:
        s, store = self.settings, self.store
        if store is None or store.rollouts < s.min_rollouts:
            return
        rate = store.failed / store.rollouts
        if rate > s.max_failure_rate:
            raise CriticUnavailable(
                f"{store.failed} of {store.rollouts} rollouts ({rate:.0%}) got no valid critique, more than "
                f"max_failure_rate={s.max_failure_rate:.0%}; see critiques.jsonl in the run folder for the errors"
            )

    def build(self, output: dict[str, Any], prompts: list[Any], rewards: Any, feedbacks: Any = None) -> dict[str, Any]:
        import torch
        from trl.trainer.utils import pad

        tr = self.trainer
        tok = tr.processing_class
        device = tr.accelerator.device
        completion_ids = output["completion_ids"]
        completion_mask = output["completion_mask"]
        n = int(completion_ids.size(0))
        contexts: list[dict[str, Any]] = list(feedbacks) if feedbacks is not None else [{}] * n
        s = self.settings
        teacher_ids: list[Any] = []
        keep: list[float] = []
        truncated = 0
        lengths = []
        self.last_prompts = []
        for i in range(n):
            ctx = contexts[i] or {}
            feedback, reference = "", ctx.get("solution", "")
            if s.condition == "stepalign":
                result = self.store.results[i] if self.store is not None and i < len(self.store.results) else None
                ok = isinstance(result, Critique)
                feedback = result.feedback if isinstance(result, Critique) else ""
            else:
                ok = bool(reference.strip())
            tc = teacher_context(
                s.condition,
                problem=ctx.get("problem", ""),
                tokenizer=tok,
                budget=s.context_budget,
                thinking=s.teacher_thinking,
                feedback=feedback,
                reference_solution=reference,
            )
            truncated += tc.truncated
            ids = tok(tc.text, add_special_tokens=False)["input_ids"][-tr.args.max_reprompt_len :]
            lengths.append(len(ids))
            teacher_ids.append(torch.as_tensor(ids, dtype=torch.long, device=device))
            keep.append(1.0 if ok else 0.0)
            self.last_prompts.append(tc.text)
        t_ids = pad(teacher_ids, padding_value=tok.pad_token_id, padding_side="left")
        t_mask = pad([torch.ones_like(t) for t in teacher_ids], padding_value=0, padding_side="left")
        mask = torch.tensor(keep, dtype=torch.float32, device=device)
        self.rollouts += n
        self.masked += int(n - sum(keep))
        self.last_metrics = {
            # These two names are read by TRL's diagnostics; without them it warns that nothing is distilled.
            "self_distillation/reprompt_sample_fraction": float(mask.mean().item()) if n else 0.0,
            "self_distillation/success_group_fraction": 1.0,
            "stepalign/masked_fraction": 1.0 - (float(mask.mean().item()) if n else 0.0),
            "stepalign/context_truncated_fraction": truncated / max(1, n),
            "stepalign/teacher_prompt_tokens": sum(lengths) / max(1, n),
        }
        if self.store is not None and self.store.rollouts:
            self.last_metrics["stepalign/critic_failure_rate"] = self.store.failed / self.store.rollouts
        self._check_failure_rate()
        return {
            "teacher_input_ids": torch.cat([t_ids, completion_ids], dim=1),
            "teacher_attention_mask": torch.cat([t_mask, completion_mask], dim=1),
            "self_distillation_mask": mask,
        }


def sdpo_trainer_class() -> type:
    """`SDPOTrainer` with two additions: an epoch-seeded sampler (TRL's replays epoch 0's order after a resume
    past the first epoch) and a logged mean per-token advantage, log p_teacher - log p_student (the logged
    sampled_token loss is a surrogate)."""
    import torch
    from trl.experimental.sdpo import SDPOTrainer
    from trl.trainer.utils import RepeatSampler, selective_log_softmax

    class EpochSeededRepeatSampler(RepeatSampler):  # type: ignore[misc]
        def set_epoch(self, epoch: int) -> None:
            if self.shuffle:
                self.generator.manual_seed((self.seed or 0) + epoch)

    class StepAlignSDPOTrainer(SDPOTrainer):  # type: ignore[misc]
        def _get_train_sampler(self, dataset: Any = None) -> Any:
            dataset = self.train_dataset if dataset is None else dataset
            return EpochSeededRepeatSampler(
                data_source=dataset,
                mini_repeat_count=self.num_generations,
                batch_size=self.args.generation_batch_size // self.num_generations,
                repeat_count=self.num_iterations * self.args.steps_per_generation,
                shuffle=self.shuffle_dataset,
                seed=self.args.seed,
            )

        def _compute_self_distillation_loss(self, model: Any, inputs: Any, distillation_logits: Any) -> Any:
            with torch.no_grad():
                ids = distillation_logits.completion_ids
                m = distillation_logits.loss_mask
                s = selective_log_softmax(distillation_logits.student_logits, ids)
                t = selective_log_softmax(distillation_logits.teacher_logits, ids)
                adv = ((t - s) * m).sum() / m.sum().clamp(min=1.0)
            mode = "train" if model.training else "eval"
            self._metrics[mode]["stepalign/mean_token_advantage"].append(self.accelerator.gather(adv).mean().item())
            return super()._compute_self_distillation_loss(model, inputs, distillation_logits)

    return StepAlignSDPOTrainer
