"""The checker engine: exact critiques of arithmetic-chain solutions, through the real critique pipeline."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest

from critic_service.critic import Critic, CriticConfig
from critic_service.engines.base import Sampling
from critic_service.engines.checker import CheckerEngine, critique_chain
from critic_service.errors import InvalidRequest, UnsupportedProblem
from shared.answers import AnswerChecker, CheckerConfig
from shared.arithmetic import format_number, parse_chain
from shared.critique_text import ParsedCritique
from shared.schemas import Case, CritiqueRequest, FeedbackMode
from shared.steps import segment
from tests.critic_service.arith_cases import KINDS, generate


@pytest.fixture(scope="module")
def checker() -> Iterator[AnswerChecker]:
    with AnswerChecker(CheckerConfig(workers=2)) as c:
        yield c


def _critic(checker: AnswerChecker) -> Critic:
    return Critic(CheckerEngine(), checker, CriticConfig(sampling=Sampling(), max_attempts=1))


def test_two_thousand_injected_errors(checker: AnswerChecker) -> None:
    cases = generate(2000, seed=1)
    assert Counter(c.kind for c in cases).keys() == set(KINDS)
    critic = _critic(checker)

    async def run_all() -> list[tuple[str, int | None, int]]:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> tuple[str, int | None, int]:
            c = cases[i]
            req = CritiqueRequest(
                problem=c.chain.problem_text(),
                reference_answer=format_number(c.chain.answer),
                student_solution=c.solution,
                feedback_mode=FeedbackMode.scribe if i % 5 == 0 else FeedbackMode.splice,
            )
            async with sem:
                got = await critic.critique(req)
            return got.case.value, got.pivotal_step, got.meta.attempts

        return await asyncio.gather(*(one(i) for i in range(len(cases))))

    results = asyncio.run(run_all())
    wrong = [
        (c.kind, c.case, c.pivot, got[:2], c.solution)
        for c, got in zip(cases, results, strict=True)
        if (c.case, c.pivot) != got[:2]
    ]
    assert not wrong, f"{len(wrong)} wrong, first: {wrong[:3]}"
    assert all(attempts == 1 for _, _, attempts in results)  # the checker's text always validates


def test_correction_is_in_the_students_notation() -> None:
    chain = parse_chain("Start with 37. Add 48. Subtract 19. Multiply by 2.")
    steps = [s.text for s in segment("Step 1: 37+48=85\nStep 2: 85−19=67\nStep 3: 67×2=134").steps]
    c = critique_chain(chain, steps, "134", FeedbackMode.splice)
    assert (c.case, c.pivotal_step) == (Case.D, 2)
    assert c.body == "<step_2>85−19=66</step_2>\n<step_3>66×2=132</step_3>\n<answer>\\boxed{132}</answer>"
    assert c.summary[1].note == "85 − 19 is 66, not 67"


async def test_unsupported_problem_and_wrong_reference(checker: AnswerChecker) -> None:
    critic = _critic(checker)
    with pytest.raises(UnsupportedProblem, match="Start with <number>"):
        await critic.critique(
            CritiqueRequest(problem="Prove that there are infinitely many primes.", reference_answer="1", steps=["a"])
        )
    with pytest.raises(InvalidRequest, match="not the chain's value 85"):
        await critic.critique(CritiqueRequest(problem="Start with 37. Add 48.", reference_answer="84", steps=["x"]))


# --- Merged derivations: a step may apply several consecutive additions/subtractions at once ---


def _judge(problem: str, solution: str) -> ParsedCritique:
    from shared.answers import last_boxed

    seg = segment(solution)
    return critique_chain(parse_chain(problem), [s.text for s in seg.steps], last_boxed(solution), FeedbackMode.splice)


MERGED = "Start with 49. Multiply by 2. Add 9. Subtract 5. Multiply by 3. Add 4."


def test_a_merged_derivation_is_judged_right() -> None:
    merged = (
        "<step_1>49 * 2 = 98</step_1>\n<step_2>98 + 9 - 5 = 102</step_2>\n<step_3>102 * 3 = 306</step_3>\n"
        "<step_4>306 + 4 = 310</step_4>\n<answer>\\boxed{310}</answer>"
    )
    c = _judge(MERGED, merged)
    assert (c.case, c.pivotal_step) == (Case.A, None)
    assert all(v.verdict.value == "correct" for v in c.summary)
    # Mixed: merged in one place, one operation per step elsewhere; and merging only part of a run.
    mixed = "<step_1>49 * 2 = 98</step_1>\n<step_2>98 + 9 = 107</step_2>\n<step_3>107 - 5 = 102</step_3>\n"
    mixed += "<step_4>102 * 3 = 306</step_4>\n<step_5>306 + 4 = 310</step_5>\n<answer>\\boxed{310}</answer>"
    assert _judge(MERGED, mixed).case is Case.A


def test_a_wrong_merged_step_is_the_pivot_and_the_correction_goes_one_operation_per_step() -> None:
    wrong = (
        "<step_1>49 * 2 = 98</step_1>\n<step_2>98 + 9 - 5 = 92</step_2>\n<step_3>92 * 3 = 276</step_3>\n"
        "<step_4>276 + 4 = 280</step_4>\n<answer>\\boxed{280}</answer>"
    )
    c = _judge(MERGED, wrong)
    assert (c.case, c.pivotal_step) == (Case.D, 2)
    assert c.summary[1].note == "98 + 9 - 5 is 102, not 92"
    assert c.body == (
        "<step_2>98 + 9 = 107</step_2>\n<step_3>107 - 5 = 102</step_3>\n<step_4>102 * 3 = 306</step_4>\n"
        "<step_5>306 + 4 = 310</step_5>\n<answer>\\boxed{310}</answer>"
    )
    # After a merged step, the next step is judged from the right operation on.
    late = (
        "<step_1>49 * 2 = 98</step_1>\n<step_2>98 + 9 - 5 = 102</step_2>\n<step_3>102 * 3 = 316</step_3>\n"
        "<step_4>316 + 4 = 320</step_4>\n<answer>\\boxed{320}</answer>"
    )
    c = _judge(MERGED, late)
    assert (c.case, c.pivotal_step) == (Case.D, 3)
    assert c.body is not None and c.body.startswith("<step_3>102 * 3 = 306</step_3>\n<step_4>306 + 4 = 310")


def test_merges_that_are_not_the_chains_operations_are_wrong() -> None:
    # A multiplication merged with an addition (ambiguous precedence) is not accepted, even with a right value.
    c = _judge(MERGED, "<step_1>49 * 2 + 9 = 107</step_1>\n<answer>\\boxed{310}</answer>")
    assert c.pivotal_step == 1 and "only consecutive additions and subtractions" in c.summary[0].note
    # Merged operations that are not the chain's next ones.
    c = _judge(MERGED, "<step_1>49 * 2 = 98</step_1>\n<step_2>98 + 9 - 4 = 103</step_2>\n<answer>\\boxed{103}</answer>")
    assert c.pivotal_step == 2
    assert c.summary[1].note == "applies + 9 - 4, but the operations are 'Add 9. Subtract 5.'"


def test_a_truncated_merged_solution_is_finished_from_the_next_operation() -> None:
    c = _judge(MERGED, "<step_1>49 * 2 = 98</step_1>\n<step_2>98 + 9 - 5 = 102</step_2>")
    assert (c.case, c.pivotal_step) == (Case.C, 2)
    assert c.body == (
        "<step_2>98 + 9 - 5 = 102</step_2>\n<step_3>102 * 3 = 306</step_3>\n<step_4>306 + 4 = 310</step_4>\n"
        "<answer>\\boxed{310}</answer>"
    )


async def test_merged_solutions_pass_the_service_validation(checker: AnswerChecker) -> None:
    critic = _critic(checker)
    for solution, case in [
        ("<step_1>49 * 2 = 98</step_1>\n<step_2>98 + 9 - 5 = 102</step_2>\n<step_3>102 * 3 + 4 = 310</step_3>\n"
         "<answer>\\boxed{310}</answer>", "B"),
        ("<step_1>49 * 2 = 98</step_1>\n<step_2>98 + 9 - 5 = 102</step_2>\n<step_3>102 * 3 = 306</step_3>\n"
         "<step_4>306 + 4 = 310</step_4>\n<answer>\\boxed{310}</answer>", "A"),
    ]:  # fmt: skip
        for mode in FeedbackMode:
            got = await critic.critique(
                CritiqueRequest(problem=MERGED, reference_answer="310", student_solution=solution, feedback_mode=mode)
            )
            assert got.case.value == case and got.meta.attempts == 1
