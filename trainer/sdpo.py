"""A thin adapter on `trl.experimental.sdpo.SDPOTrainer` (trl==1.16.0): our teacher contexts at its seam.

TRL's seam: `SDPOTrainer.__init__` ends by assigning `self.teacher_context_builder`, and
`_prepare_training_batch` calls `builder.build(batch, prompts, rewards, feedbacks=privileged_contexts)` after the
reward functions, then reads `builder.last_metrics`. TRL hands the SAME `privileged_context` dicts to the reward
function and to the builder, so a rollout's critique travels on its own context dict (`CRITIQUE`): the reward
asks the critic once per rollout and puts the result there; the builder reads it back. A context without one is
an error, never a silent mask. We replace the builder per condition:
- `stepalign`: the critic's `feedback` on this very rollout;
- `refsol`: the problem's reference solution.
A rollout whose critique failed gets `self_distillation_mask = 0`: excluded from the loss, counted, logged;
the run stops past `max_failure_rate`. Everything else (losses, teacher kinds, LoRA, accelerate, checkpoints) is
TRL's. `tests/trainer/test_trl_seam.py` fails loudly if the seam changes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.client import CriticError
from shared.schemas import Critique, CritiqueRequest, FeedbackMode
from trainer.contexts import teacher_context
from trainer.critic_client import TrainerCritic
from trainer.outcomes import CriticOutcomes, CriticUnavailable
from trainer.rewards import critique_reward

CRITIQUE = "critique"  # key of a rollout's critique result on its privileged_context dict
COMPLETION = "completion"  # the text that was critiqued, to check the builder sees the same rollout


class MissingCritique(RuntimeError):
    """A stepalign rollout reached the builder without a critique on its context: the reward function and the
    builder no longer share TRL's `privileged_context` objects (see ../shared/TRL-NOTES.md)."""


def _local_error(message: str) -> CriticError:
    return CriticError(message, status=422)


def critique_request(completion: str, ctx: dict[str, Any], mode: FeedbackMode) -> CritiqueRequest | CriticError:
    """The critique request of one rollout, or the local error that keeps it from being sent."""
    if not completion.strip():
        return _local_error("empty completion")
    try:
        return CritiqueRequest(
            problem=ctx["problem"],
            reference_answer=ctx.get("answer") or None,
            reference_solution=ctx.get("solution") or None,
            student_solution=completion,
            feedback_mode=mode,
            request_id=f"{ctx.get('id', '')}:{uuid.uuid4().hex[:8]}",
        )
    except ValidationError as exc:
        return _local_error(f"rollout cannot be sent to the critic: {exc.errors()[0]['msg']}")


class CritiqueReward:
    """The reward function of the stepalign condition: asks the critic about every rollout of the step at once;
    reward 1 for a right final answer (case A or B). Each result is put on its rollout's context dict."""

    __name__ = "critic_reward"

    def __init__(self, critic: TrainerCritic, mode: FeedbackMode) -> None:
        self.critic = critic
        self.mode = mode

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        contexts: list[dict[str, Any]] = kwargs["privileged_context"]
        if len({id(c) for c in contexts}) != len(contexts):
            raise MissingCritique("two rollouts share one privileged_context dict; their critiques would collide")
        state = kwargs.get("trainer_state")
        step = int(state.global_step) if state is not None else 0
        built = [critique_request(t, c, self.mode) for t, c in zip(texts, contexts, strict=True)]
        to_send = [(i, r) for i, r in enumerate(built) if isinstance(r, CritiqueRequest)]
        answers = self.critic.critique_step(step, [r for _, r in to_send])
        results: list[Critique | CriticError] = [
            r if isinstance(r, CriticError) else _local_error("not sent") for r in built
        ]
        for (i, _), got in zip(to_send, answers, strict=True):
            results[i] = got
        for i, (ctx, result) in enumerate(zip(contexts, results, strict=True)):
            if isinstance(built[i], CriticError):
                self.critic.outcomes.record(result)  # sent ones were counted by the critic client
            ctx[CRITIQUE] = result
            ctx[COMPLETION] = texts[i]
        return [critique_reward(r) for r in results]


@dataclass(frozen=True)
class BuilderSettings:
    condition: str  # stepalign | refsol
    context_budget: int
    teacher_thinking: bool
    max_failure_rate: float
    min_rollouts: int


def check_failure_rate(outcomes: CriticOutcomes, max_rate: float, min_rollouts: int) -> None:
    """Stop the run (`CriticUnavailable`) once too many rollouts got no valid critique."""
    if outcomes.rollouts < min_rollouts:
        return
    rate = outcomes.failure_rate()
    if rate > max_rate:
        raise CriticUnavailable(
            f"{outcomes.failed} of {outcomes.rollouts} rollouts ({rate:.0%}) got no valid critique, more than "
            f"critic.max_failure_rate={max_rate:.0%}; the critic said: {outcomes.most_common_errors()}. "
            "Each failure is in critiques.jsonl in the run folder."
        )


class TeacherContextBuilder:
    """Replaces TRL's `SuccessfulRolloutTeacherContextBuilder`: one teacher prompt per rollout, built from this
    rollout's critique (stepalign) or the problem's reference solution (refsol)."""

    def __init__(self, trainer: Any, settings: BuilderSettings, outcomes: CriticOutcomes | None = None) -> None:
        self.trainer = trainer
        self.settings = settings
        self.outcomes = outcomes
        self.last_metrics: dict[str, float] = {}
        self.masked = 0
        self.rollouts = 0
        self.last_prompts: list[str] = []  # for inspection and tests
        self.last_critiques: list[Critique | None] = []

    def _feedback(self, i: int, ctx: dict[str, Any], completion: str) -> Critique | None:
        if CRITIQUE not in ctx:
            raise MissingCritique(f"rollout {i} of this step reached the teacher-context builder without a critique")
        if ctx.get(COMPLETION) != completion:
            raise MissingCritique(f"rollout {i}: the critique on its context is of another completion")
        result = ctx[CRITIQUE]
        return result if isinstance(result, Critique) else None

    def build(self, output: dict[str, Any], prompts: list[Any], rewards: Any, feedbacks: Any = None) -> dict[str, Any]:
        import torch
        from trl.trainer.utils import pad

        tr = self.trainer
        tok = tr.processing_class
        device = tr.accelerator.device
        completion_ids = output["completion_ids"]
        completion_mask = output["completion_mask"]
        n = int(completion_ids.size(0))
        if feedbacks is None or len(feedbacks) != n:
            raise MissingCritique(f"{n} rollouts but {0 if feedbacks is None else len(feedbacks)} contexts from TRL")
        s = self.settings
        texts = tok.batch_decode(completion_ids, skip_special_tokens=True) if s.condition == "stepalign" else []
        teacher_ids: list[Any] = []
        keep: list[float] = []
        truncated = elided = 0
        lengths = []
        self.last_prompts = []
        self.last_critiques = []
        for i in range(n):
            ctx = feedbacks[i] or {}
            feedback, reference, steps = "", ctx.get("solution", ""), []
            if s.condition == "stepalign":
                critique = self._feedback(i, ctx, texts[i])
                self.last_critiques.append(critique)
                ok = critique is not None
                if critique is not None:
                    feedback, steps = critique.feedback, [x.text for x in critique.steps.steps]
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
                student_steps=steps,
            )
            truncated += tc.truncated
            elided += tc.elided_steps > 0
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
        kept = float(mask.mean().item()) if n else 0.0
        self.last_metrics = {
            # These two names are read by TRL's diagnostics; without them it warns that nothing is distilled.
            "self_distillation/reprompt_sample_fraction": kept,
            "self_distillation/success_group_fraction": 1.0,
            "stepalign/masked_fraction": 1.0 - kept,
            "stepalign/context_truncated_fraction": truncated / max(1, n),
            "stepalign/context_elided_fraction": elided / max(1, n),
            "stepalign/teacher_prompt_tokens": sum(lengths) / max(1, n),
        }
        if self.outcomes is not None:
            self.last_metrics["stepalign/critic_failure_rate"] = self.outcomes.failure_rate()
            check_failure_rate(self.outcomes, s.max_failure_rate, s.min_rollouts)
        return {
            "teacher_input_ids": torch.cat([t_ids, completion_ids], dim=1),
            "teacher_attention_mask": torch.cat([t_mask, completion_mask], dim=1),
            "self_distillation_mask": mask,
        }


def sdpo_trainer_class(loss_cut_threshold: float | None = None) -> type:
    """`SDPOTrainer` with three additions at its loss seam and sampler: an epoch-seeded sampler (TRL's replays
    epoch 0's order after a resume past the first epoch), a logged mean per-token advantage
    log p_teacher - log p_student (the logged sampled_token loss is a surrogate), and, when `loss_cut_threshold`
    is set, each rollout's distillation loss cut after the first token the teacher rejects (`trainer.losses`)."""
    import dataclasses

    import torch
    from trl.experimental.sdpo import SDPOTrainer
    from trl.trainer.utils import RepeatSampler, selective_log_softmax

    from trainer.losses import first_rejection_mask, mean_token_advantage

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
            mode = "train" if model.training else "eval"
            metrics = self._metrics[mode]
            with torch.no_grad():
                ids = distillation_logits.completion_ids
                m = distillation_logits.loss_mask
                s = selective_log_softmax(distillation_logits.student_logits, ids)
                t = selective_log_softmax(distillation_logits.teacher_logits, ids)
                adv = mean_token_advantage(s, t, m)
                if loss_cut_threshold is not None:
                    cut, stats = first_rejection_mask(t, m, loss_cut_threshold)
                    distillation_logits = dataclasses.replace(distillation_logits, loss_mask=cut)
                    kept = torch.tensor(
                        [stats.tokens_after / max(1, stats.tokens_before), stats.rollouts_cut / max(1, m.size(0))],
                        device=m.device,
                    )
                    kept = self.accelerator.gather(kept).view(-1, 2).mean(dim=0)
                    metrics["stepalign/loss_cut_token_fraction_kept"].append(kept[0].item())
                    metrics["stepalign/loss_cut_rollout_fraction"].append(kept[1].item())
            metrics["stepalign/mean_token_advantage"].append(self.accelerator.gather(adv).mean().item())
            return super()._compute_self_distillation_loss(model, inputs, distillation_logits)

    return StepAlignSDPOTrainer
