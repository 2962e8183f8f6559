"""The critic as the paper describes it, through the real critique pipeline: it is shown the student's final
answer; case B keeps every other student step verbatim; case C may compress (in both feedback modes)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import pytest

from critic_service.critic import Critic, CriticConfig
from critic_service.engines.base import Sampling
from critic_service.engines.checker import CheckerEngine
from critic_service.errors import InvalidCritique
from shared.answers import AnswerChecker, CheckerConfig
from shared.arithmetic import format_number
from shared.prompts import NO_FINAL_ANSWER
from shared.schemas import Case, CritiqueRequest, FeedbackMode
from shared.steps import segment
from tests.critic_service.arith_cases import make_case
from tests.critic_service.fakes import VALID_D, ScriptedEngine

PROBLEM = "Start with 37. Add 48. Subtract 19. Multiply by 2. What is the result?"


@pytest.fixture(scope="module")
def checker() -> Iterator[AnswerChecker]:
    with AnswerChecker(CheckerConfig(workers=1)) as c:
        yield c


def _critic(engine: object, checker: AnswerChecker, attempts: int = 1) -> Critic:
    return Critic(engine, checker, CriticConfig(sampling=Sampling(), max_attempts=attempts))  # type: ignore[arg-type]


def _user_message(engine: ScriptedEngine) -> str:
    return next(m["content"] for m in engine.jobs[0].messages if m["role"] == "user")


@pytest.mark.parametrize(
    ("solution", "shown"),
    [
        ("<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 67</step_2>\n<answer>\\boxed{7}</answer>", "\\boxed{7}"),
        (
            "<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 66</step_2>\n<step_3>So it is \\boxed{7}</step_3>",
            "\\boxed{7}",
        ),
        ("<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 66</step_2>", NO_FINAL_ANSWER),
    ],
)
async def test_the_critic_is_shown_the_students_final_answer(solution: str, shown: str, checker: AnswerChecker) -> None:
    engine = ScriptedEngine([VALID_D])
    req = CritiqueRequest(problem=PROBLEM, reference_answer="132", student_solution=solution)
    with contextlib.suppress(InvalidCritique):  # whether the scripted critique fits is beside the point
        await _critic(engine, checker).critique(req)
    user = _user_message(engine)
    assert f"Student's final answer: {shown}" in user
    assert "<answer>" not in user.split("Student's solution")[1].split("Student's final answer")[0]


async def test_explicit_steps_and_final_answer_reach_the_prompt(checker: AnswerChecker) -> None:
    engine = ScriptedEngine([VALID_D])
    req = CritiqueRequest(problem=PROBLEM, reference_answer="132", steps=["37 + 48 = 85"], final_answer="\\boxed{85}")
    with contextlib.suppress(InvalidCritique):
        await _critic(engine, checker).critique(req)
    assert "Student's final answer: \\boxed{85}" in _user_message(engine)


async def test_case_b_splices_the_students_later_steps_byte_for_byte(checker: AnswerChecker) -> None:
    rng = random.Random(7)
    critic = _critic(CheckerEngine(), checker)
    seen = 0
    while seen < 60:
        case = make_case(rng, "slip_recovered")
        seg = segment(case.solution)
        req = CritiqueRequest(
            problem=case.chain.problem_text(),
            reference_answer=format_number(case.chain.answer),
            student_solution=case.solution,
        )
        got = await critic.critique(req)
        assert (got.case, got.pivotal_step) == (Case.B, case.pivot)
        n = got.pivotal_step
        assert n is not None
        solution = got.feedback.split("\n\nSolution:\n", 1)[1]
        written = segment(solution).steps
        assert [s.text for s in written[: n - 1]] == [s.text for s in seg.steps[: n - 1]]
        assert written[n - 1].text != seg.steps[n - 1].text  # the slipped step is rewritten
        assert [s.text for s in written[n:]] == [s.text for s in seg.steps[n:]]  # the rest is the student's own
        for s in seg.steps[n:]:
            assert f">{s.text}</step_" in solution  # byte for byte, in a step tag
        seen += 1


B_INSERTED = """Case: B
Pivotal step: 2
Summary:
Step 1: Correct
Step 2: Incorrect -- the value 85 is used without saying where it comes from
Step 3: Correct
Correction:
<step_2>From step 1 the running value is 85.</step_2>
<step_3>85 - 19 = 66</step_3>
<answer>\\boxed{132}</answer>"""


async def test_case_b_with_an_inserted_step_renumbers_the_rest(checker: AnswerChecker) -> None:
    student = "<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 66</step_2>\n<step_3>66 × 2 = 132 </step_3>\n" \
        "<answer>\\boxed{132}</answer>"  # fmt: skip
    req = CritiqueRequest(problem=PROBLEM, reference_answer="132", student_solution=student)
    got = await _critic(ScriptedEngine([B_INSERTED]), checker).critique(req)
    solution = got.feedback.split("\n\nSolution:\n", 1)[1]
    assert solution == (
        "<step_1>37 + 48 = 85</step_1>\n<step_2>From step 1 the running value is 85.</step_2>\n"
        "<step_3>85 - 19 = 66</step_3>\n<step_4>66 × 2 = 132 </step_4>\n<answer>\\boxed{132}</answer>"
    )


C_COMPRESSED_SPLICE = """Case: C
Pivotal step: 3
Summary:
Step 1: Correct
Step 2: Correct
Step 3: Correct
Correction:
<step_1>37 + 48 - 19 = 66</step_1>
<step_2>66 * 2 = 132</step_2>
<answer>\\boxed{132}</answer>"""

C_COMPRESSED_SCRIBE = C_COMPRESSED_SPLICE.replace("Correction:", "Solution:")
TRUNCATED = "<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 66</step_2>\n<step_3>66 * 2 ="


@pytest.mark.parametrize("mode", list(FeedbackMode))
async def test_case_c_may_compress_in_both_modes(mode: FeedbackMode, checker: AnswerChecker) -> None:
    text = C_COMPRESSED_SPLICE if mode is FeedbackMode.splice else C_COMPRESSED_SCRIBE
    req = CritiqueRequest(problem=PROBLEM, reference_answer="132", student_solution=TRUNCATED, feedback_mode=mode)
    got = await _critic(ScriptedEngine([text]), checker).critique(req)
    assert got.case is Case.C
    solution = got.feedback.split("\n\nSolution:\n", 1)[1]
    assert solution.startswith("<step_1>37 + 48 - 19 = 66</step_1>\n<step_2>66 * 2 = 132</step_2>")
    assert "85 - 19 = 66" not in solution  # compressed: the student's steps were condensed, not copied
    if mode is FeedbackMode.scribe:
        fidelity = next(r for r in got.checks.results if r.rule == "fidelity")
        assert fidelity.passed is None and "case C may compress" in fidelity.detail


async def test_a_correction_must_start_where_its_case_allows(checker: AnswerChecker) -> None:
    # D takes over at the pivotal step itself: a correction that starts earlier is rejected (and resampled).
    early = VALID_D.replace(
        "<step_2>85 - 19 = 66</step_2>", "<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 66</step_2>"
    )
    student = "<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 67</step_2>\n<step_3>67 * 2 = 134</step_3>\n" \
        "<answer>\\boxed{134}</answer>"  # fmt: skip
    req = CritiqueRequest(problem=PROBLEM, reference_answer="132", student_solution=student)
    with pytest.raises(InvalidCritique) as err:
        await _critic(ScriptedEngine([early]), checker).critique(req)
    assert "must start at the pivotal step <step_2>" in str(err.value.details)


@pytest.mark.parametrize("mode", list(FeedbackMode))
async def test_case_d_may_delete_superfluous_last_steps(mode: FeedbackMode, checker: AnswerChecker) -> None:
    # The student had the result at step 3 and went on with an operation the problem does not have. The correction
    # is the answer alone: the student's steps 1-3 are the solution. (Found in a demo run: the checker critic's
    # answer-only correction was rejected three times, a 502 for a rollout it judged right.)
    problem = "Start with 22. Subtract 1. Add 5. Subtract 9. What is the result?"
    student = ("<step_1>22 - 1 = 21</step_1>\n<step_2>21 + 5 = 26</step_2>\n<step_3>26 - 9 = 17</step_3>\n"
               "<step_4>17 - 9 = 8</step_4>\n<answer>\\boxed{8}</answer>")  # fmt: skip
    req = CritiqueRequest(problem=problem, reference_answer="17", student_solution=student, feedback_mode=mode)
    got = await _critic(CheckerEngine(), checker).critique(req)
    assert got.case is Case.D and got.pivotal_step == 4
    solution = got.feedback.split("\n\nSolution:\n", 1)[1]
    assert solution == student.split("\n<step_4>")[0] + "\n<answer>\\boxed{17}</answer>"
    if mode is FeedbackMode.scribe:
        return
    # Other cases still need a step: a B correction that is only an answer says nothing about the step it fixes.
    b_only_answer = "Case: B\nPivotal step: 2\nSummary:\nStep 1: Correct\nStep 2: Incorrect -- unjustified\n" \
        "Step 3: Correct\nStep 4: Incorrect -- extra\nCorrection:\n<answer>\\boxed{17}</answer>"  # fmt: skip
    with pytest.raises(InvalidCritique) as err:
        await _critic(ScriptedEngine([b_only_answer]), checker).critique(req)
    assert "has no <step_k> block" in str(err.value.details)
