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
