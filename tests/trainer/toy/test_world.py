"""The toy world: problems within their knobs, both derivations valid for the checker critic, realistic slips."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from critic_service.engines.checker import critique_chain
from shared.answers import last_boxed
from shared.arithmetic import parse_chain
from shared.schemas import Case, FeedbackMode
from shared.steps import segment
from trainer.toy.slips import SlipSettings, add_without_carry, needs_carry, subtract_without_borrow, write_attempt
from trainer.toy.world import (
    WorldSettings,
    derivations_differ,
    reference_solution,
    split_of,
    student_solution,
    toy_chains,
    toy_problems,
)


def _judge(problem: str, solution: str) -> tuple[Case, int | None]:
    seg = segment(solution)
    c = critique_chain(parse_chain(problem), [s.text for s in seg.steps], last_boxed(solution), FeedbackMode.splice)
    return c.case, c.pivotal_step


def test_problems_stay_within_their_knobs() -> None:
    world = WorldSettings(start=(5, 20), n_ops=(2, 4), add=(1, 5), multiply=(2, 3), max_value=200)
    chains = toy_chains(400, seed=3, split="train", world=world)
    assert len({c.problem_text() for c in chains}) == 400
    for c in chains:
        assert 5 <= c.start <= 20 and 2 <= len(c.ops) <= 4
        assert all(0 <= v <= 200 for v in c.values())
        for symbol, x in c.ops:
            assert (1 <= x <= 5) if symbol in "+-" else (symbol == "*" and 2 <= x <= 3)
        assert parse_chain(c.problem_text()) == c  # the problem text is the checker's format
    assert Counter(s for c in chains for s, _ in c.ops).keys() == {"+", "-", "*"}
    with pytest.raises(ValueError, match="n_ops"):
        WorldSettings(n_ops=(4, 2))


def test_train_and_test_problems_are_disjoint() -> None:
    train = {p.problem for p in toy_problems(1500, seed=0, split="train")}
    test = toy_problems(200, seed=0, split="test")
    assert not train & {p.problem for p in test}
    assert all(split_of(p.problem, WorldSettings()) == "test" for p in test)
    assert test[0].solution == reference_solution(toy_chains(1, seed=0, split="test")[0])


def test_both_derivations_are_right_and_differ_where_operations_merge() -> None:
    chains = toy_chains(500, seed=1, split="train")
    for c in chains:
        student, reference = student_solution(c), reference_solution(c)
        assert _judge(c.problem_text(), student) == (Case.A, None), student
        assert _judge(c.problem_text(), reference) == (Case.A, None), reference
        assert (student != reference) == derivations_differ(c)
    # Most references take another path (different intermediate values), or RefSol could not show its effect.
    assert sum(derivations_differ(c) for c in chains) / len(chains) > 0.6
    c = parse_chain("Start with 49. Multiply by 2. Add 9. Subtract 5. Multiply by 3.")
    assert reference_solution(c) == (
        "<step_1>49 * 2 = 98</step_1>\n<step_2>98 + 9 - 5 = 102</step_2>\n<step_3>102 * 3 = 306</step_3>\n"
        "<answer>\\boxed{306}</answer>"
    )


def test_slips_are_realistic_and_the_checker_finds_the_first_one() -> None:
    assert (add_without_carry(98, 9), add_without_carry(199, 5), subtract_without_borrow(102, 5)) == (97, 194, 107)
    assert needs_carry(98, 9) and not needs_carry(91, 8)
    rng = random.Random(0)
    chains = toy_chains(600, seed=2, split="train")
    kinds: Counter[bool] = Counter()
    clean = SlipSettings(carry=0, borrow=0, small=0, merge=0)
    for c in chains:
        a = write_attempt(c, rng, SlipSettings(small=0.1, merge=0.3))
        case, pivot = _judge(c.problem_text(), a.text)
        if a.correct:
            assert (case, pivot) == (Case.A, None)
        else:
            assert pivot == a.first_wrong and case in (Case.D, Case.B), a.text
            # The first wrong character: where the attempt leaves the right solution in its own derivation.
            right = write_attempt(c, rng, clean, groups=list(a.groups)).text
            w = a.wrong_char
            assert w is not None and a.text[:w] == right[:w] and a.text[w] != right[w]
        kinds[a.correct] += 1
    share = kinds[True] / len(chains)
    assert 0.3 < share < 0.7, share  # carries forgotten in 70% of the additions that need one
    # Forced slips, and no slips at all.
    assert all(not write_attempt(c, rng, SlipSettings(), force_wrong=True).correct for c in chains[:100])
    assert all(write_attempt(c, rng, clean).text == student_solution(c) for c in chains[:100])
