"""Pure tensor functions the trainer wires into TRL's distillation loss: the per-token advantage it logs, and the
loss cut at the first token the teacher rejects.

The cut (our addition beyond the paper, off by default): once the student's rollout goes wrong, a teacher that
only ever saw correct continuations keeps predicting the correction's tokens, and a forward KL on every later
token teaches the student arithmetic that contradicts its own earlier steps (../shared/TOY-WORLD.md measured it).
Cutting each rollout's loss right after the first token the teacher gives a probability below a threshold keeps
the signal the paper describes (about zero on the copied prefix, strongly negative on the first wrong token) and
drops what follows it. It uses the teacher only, no answer key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CutStats:
    """What a cut did to one batch."""

    rollouts_cut: int  # rollouts in which some token was rejected
    tokens_before: int  # loss tokens before the cut
    tokens_after: int  # loss tokens left


def first_rejection_mask(teacher_logps: Any, loss_mask: Any, threshold: float) -> tuple[Any, CutStats]:
    """`loss_mask` (B x T, 0/1) with every position after each row's first rejected token zeroed. A token is
    rejected when the teacher's log-probability of it (`teacher_logps`, B x T) is below log(threshold) at a position
    the loss counts; the rejected token itself keeps its loss (that is where the teacher says the student erred)."""
    import torch

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    counted = loss_mask > 0
    rejected = (teacher_logps < math.log(threshold)) & counted
    t = loss_mask.size(1)
    positions = torch.arange(t, device=loss_mask.device).expand_as(loss_mask)
    # Index of the first rejected token per row (T when there is none).
    first = torch.where(rejected, positions, torch.full_like(positions, t)).min(dim=1).values
    keep = positions <= first.unsqueeze(1)
    cut = loss_mask * keep.to(loss_mask.dtype)
    stats = CutStats(
        rollouts_cut=int((first < t).sum().item()),
        tokens_before=int(counted.sum().item()),
        tokens_after=int((cut > 0).sum().item()),
    )
    return cut, stats


def mean_token_advantage(student_logps: Any, teacher_logps: Any, mask: Any) -> Any:
    """mean over counted tokens of A_t = log p_teacher(y_t) - log p_student(y_t) (0 for an empty mask)."""
    return ((teacher_logps - student_logps) * mask).sum() / mask.sum().clamp(min=1.0)
