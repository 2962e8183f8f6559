"""The loss functions the trainer wires into TRL, on hand-made numbers: the cut at the first token the teacher
rejects, and the logged mean per-token advantage."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import first_rejection_mask, mean_token_advantage


def _logps(probs: list[list[float]]) -> torch.Tensor:
    return torch.tensor([[math.log(p) for p in row] for row in probs])


def test_cut_keeps_the_first_rejected_token_and_drops_the_rest() -> None:
    teacher = _logps([
        [0.9, 0.8, 0.1, 0.9, 0.9],  # rejected at 2: keep 0..2
        [0.9, 0.9, 0.9, 0.9, 0.9],  # never rejected: keep all
        [0.2, 0.9, 0.9, 0.9, 0.9],  # rejected at once: keep only token 0
        [0.9, 0.9, 0.9, 0.3, 0.9],  # rejected at 3, but 3 and 4 are padding: nothing to cut
    ])  # fmt: skip
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.float32)
    cut, stats = first_rejection_mask(teacher, mask, 0.5)
    assert cut.tolist() == [
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0],
    ]
    assert stats.rollouts_cut == 2 and stats.tokens_before == 17 and stats.tokens_after == 11


def test_threshold_decides_what_is_rejected() -> None:
    teacher = _logps([[0.9, 0.4, 0.2, 0.9]])
    mask = torch.ones(1, 4)
    assert first_rejection_mask(teacher, mask, 0.5)[0].tolist() == [[1, 1, 0, 0]]
    assert first_rejection_mask(teacher, mask, 0.3)[0].tolist() == [[1, 1, 1, 0]]
    assert first_rejection_mask(teacher, mask, 0.1)[0].tolist() == [[1, 1, 1, 1]]
    with pytest.raises(ValueError, match="threshold must be in"):
        first_rejection_mask(teacher, mask, 1.0)


def test_a_masked_out_rollout_stays_masked() -> None:
    teacher = _logps([[0.1, 0.1], [0.9, 0.9]])
    mask = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # rollout 0 had no valid critique
    cut, stats = first_rejection_mask(teacher, mask, 0.5)
    assert cut.tolist() == [[0, 0], [1, 1]] and stats.rollouts_cut == 0


def test_mean_token_advantage() -> None:
    student = _logps([[0.5, 0.5, 0.5]])
    teacher = _logps([[0.5, 0.25, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert mean_token_advantage(student, teacher, mask).item() == pytest.approx(math.log(0.5) / 2)
    assert mean_token_advantage(student, teacher, torch.zeros(1, 3)).item() == 0.0
