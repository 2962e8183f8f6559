"""Evaluation and localisation metrics against hand-computed values."""

from __future__ import annotations

import pytest

from trainer.metrics import (
    aggregate,
    avg_at_k,
    bootstrap_ci,
    localisation,
    maj_at_k,
    majority_group,
    pass_at_k,
    token_steps,
)

# Three problems, k = 4. Problem 0: 2 of 4 right; problem 1: 0 right, one undecided; problem 2: 4 right.
CORRECT = [[True, False, True, False], [False, None, False, False], [True, True, True, True]]


def test_avg_and_pass() -> None:
    assert avg_at_k(CORRECT) == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert pass_at_k(CORRECT) == pytest.approx(2 / 3)  # the undecided sample is not a success


def _same(groups: list[int]):  # type: ignore[no-untyped-def]
    return lambda i, j: groups[i] == groups[j]


def test_majority_groups_by_equivalence_with_ties_to_the_earliest() -> None:
    # '1/2' and '0.5' are one answer; 3 appears twice; tie 2-2 goes to the group that appeared first.
    answers = ["3", "1/2", "0.5", "3"]
    assert majority_group(answers, _same([0, 1, 1, 0])) == [0, 3]
    answers = ["1/2", "3", "0.5", "3"]
    assert majority_group(answers, _same([1, 0, 1, 0])) == [0, 2]
    assert majority_group([None, "4", None], _same([0, 1, 0])) == [1]  # no-answer samples never win
    assert majority_group([None, None], _same([0, 0])) is None


def test_maj_at_k_with_ties_and_undecided() -> None:
    answers = [["7", "5", "7", "5"], [None, "2", "3", "3"], ["1", "1", "2", "2"]]
    correct = [[True, False, True, False], [False, None, False, False], [False, False, None, None]]
    same = [_same([0, 1, 0, 1]), _same([0, 1, 2, 2]), _same([0, 0, 1, 1])]
    # p0: tie 7 vs 5 -> 7 (first) -> correct; p1: majority '3' -> wrong; p2: tie -> '1' -> wrong.
    assert maj_at_k(answers, correct, same) == pytest.approx(1 / 3)
    # With the tie in p2 going to an undecided group, it is still not a success.
    correct[2] = [None, None, True, True]
    assert maj_at_k(answers, correct, same) == pytest.approx(1 / 3)


def test_bootstrap_interval_brackets_the_mean() -> None:
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    lo, hi = bootstrap_ci(values, n=4000, seed=1)
    assert lo < 0.7 < hi and lo > 0.35 and hi <= 1.0
    assert bootstrap_ci([0.5] * 5) == (0.5, 0.5)
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)


def test_token_steps() -> None:
    #          0123456789
    spans = [(0, 3), (5, 8)]
    offsets = [(0, 1), (2, 3), (3, 5), (5, 6), (8, 9)]
    assert token_steps(offsets, spans) == [1, 1, None, 2, None]


def test_localisation_hand_computed() -> None:
    adv = [0.1, -0.1, 0.0, -4.0, -2.0, 1.0, -1.0, -0.5]
    steps = [1, 1, None, 2, 2, None, 3, None]
    loc = localisation(adv, steps, pivot=2)
    assert loc.mean_prefix == pytest.approx(0.0)  # (0.1 - 0.1 + 0.0) / 3
    assert loc.mean_pivot == pytest.approx(-3.0)
    assert loc.mean_after == pytest.approx((1.0 - 1.0 - 0.5) / 3)
    assert loc.negative_mass_at_or_after == pytest.approx(7.5 / 7.6)
    assert loc.negative_mass_at_pivot == pytest.approx(6.0 / 7.6)  # the pivotal step alone, not the later ones
    assert loc.tokens == 8
    correct = localisation([0.2, -0.2], [1, 1], pivot=None)
    assert correct.mean_prefix == 0.0 and correct.mean_pivot is None and correct.negative_mass_at_or_after is None
    with pytest.raises(ValueError, match="2 advantages but 1"):
        localisation([0.0, 1.0], [1], pivot=1)


def test_aggregate() -> None:
    a = localisation([0.0, -1.0], [1, 2], pivot=2)
    b = localisation([1.0, -3.0], [1, 2], pivot=2)
    agg = aggregate([a, b])
    assert agg["mean_prefix"] == pytest.approx(0.5) and agg["mean_pivot"] == pytest.approx(-2.0)
    assert agg["mean_after"] is None and agg["negative_mass_at_or_after"] == 1.0 and agg["rollouts"] == 2.0
    assert agg["negative_mass_at_pivot"] == 1.0
