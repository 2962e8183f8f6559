"""The TRL seam the trainer extends (trl==1.16.0). If any of this changes, our adapter must be revisited."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def test_trl_version_is_pinned() -> None:
    import trl

    assert trl.__version__ == "1.16.0"


def test_init_ends_by_assigning_the_builder() -> None:
    from trl.experimental.sdpo import SDPOTrainer

    lines = [x.strip() for x in inspect.getsource(SDPOTrainer.__init__).splitlines() if x.strip()]
    assert lines[-1].startswith("self.teacher_context_builder = ")


def test_prepare_training_batch_calls_build_then_reads_metrics() -> None:
    from trl.experimental.sdpo import SDPOTrainer

    src = inspect.getsource(SDPOTrainer._prepare_training_batch)
    build = src.index("self.teacher_context_builder.build(")
    assert "feedbacks=" in src[build : build + 200]
    assert src.index("last_metrics", build) > build
    for key in ("teacher_input_ids", "teacher_attention_mask", "self_distillation_mask"):
        assert key in inspect.getsource(SDPOTrainer)


def test_default_builder_signature_and_metric_names() -> None:
    from trl.experimental.sdpo import sdpo_trainer

    builder = sdpo_trainer.SuccessfulRolloutTeacherContextBuilder
    params = list(inspect.signature(builder.build).parameters)
    assert params[:4] == ["self", "output", "prompts", "rewards"] and "feedbacks" in params
    src = inspect.getsource(sdpo_trainer)
    assert "self_distillation/reprompt_sample_fraction" in src
    assert "self_distillation/success_group_fraction" in src


def test_methods_we_override_keep_their_signatures() -> None:
    from trl.experimental.sdpo import SDPOTrainer
    from trl.trainer.utils import RepeatSampler

    assert list(inspect.signature(SDPOTrainer._compute_self_distillation_loss).parameters) == [
        "self",
        "model",
        "inputs",
        "distillation_logits",
    ]
    assert "dataset" in inspect.signature(SDPOTrainer._get_train_sampler).parameters
    sampler_params = inspect.signature(RepeatSampler.__init__).parameters
    for name in ("data_source", "mini_repeat_count", "batch_size", "repeat_count", "shuffle", "seed"):
        assert name in sampler_params
    src = inspect.getsource(SDPOTrainer._compute_self_distillation_loss)
    for attr in ("completion_ids", "loss_mask", "student_logits", "teacher_logits"):
        assert f"distillation_logits.{attr}" in src, attr
    # We replace the loss mask (the loss cut) with dataclasses.replace: the container must stay a dataclass.
    import dataclasses

    from trl.experimental.sdpo.sdpo_trainer import DistillationLogits

    assert {"completion_ids", "loss_mask", "student_logits", "teacher_logits"} <= {
        f.name for f in dataclasses.fields(DistillationLogits)
    }


def test_teacher_kinds_and_modes_exist(tmp_path: Path) -> None:
    from trl.experimental.sdpo import SDPOConfig

    base = {"output_dir": str(tmp_path), "use_cpu": True, "report_to": "none", "bf16": False}
    for kind in ("live", "base", "ema"):
        assert SDPOConfig(**base, teacher_model_kind=kind).teacher_model_kind == kind
    assert SDPOConfig(**base, distillation_mode="sampled_token", distillation_alpha=1.0).distillation_mode
    assert SDPOConfig(**base, distillation_mode="full_logits", distillation_alpha=0.0).distillation_alpha == 0.0
    topk = SDPOConfig(**base, distillation_mode="topk_logits", distillation_topk=20, distillation_add_tail=True)
    assert topk.distillation_topk == 20


def test_reward_and_builder_get_the_same_context_objects() -> None:
    # Our critique travels from the reward function to the builder on the rollout's own privileged_context dict,
    # which works only while TRL passes the very same `inputs` dicts to both.
    from trl.experimental.sdpo import SDPOTrainer

    rewards = inspect.getsource(SDPOTrainer._calculate_rewards)
    assert "reward_kwargs = {key: [example[key] for example in inputs] for key in keys}" in rewards
    batch = inspect.getsource(SDPOTrainer._prepare_training_batch)
    assert 'privileged_contexts = [example.get("privileged_context") for example in inputs]' in batch
    assert batch.index("self._calculate_rewards(inputs") < batch.index("self.teacher_context_builder.build(")
