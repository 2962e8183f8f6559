"""Faithful-scribe feedback: splicing the student's own steps, the canonical feedback text, fidelity, repair."""

from __future__ import annotations

from typing import Any

from shared.critique_text import BodyKind, ParsedCritique, parse
from shared.schemas import Case, StepVerdict, Verdict
from shared.scribe import copied_prefix_len, fidelity, render_feedback, repair_near_copies, splice_solution
from shared.steps import join_tagged, segment

STUDENT = (
    "<step_1>Let $x$ be the number.  Then $2x + 3 = 11$.</step_1>\n"
    "<step_2>So $2x = 8$ </step_2>\n"
    "<step_3>Hence $x = 5$.</step_3>\n"
    "<answer>\\boxed{5}</answer>"
)
CRITIQUE = """Case: D
Pivotal step: 3
Summary:
Step 1: Correct
Step 2: Correct
Step 3: Incorrect -- 8 / 2 is 4, not 5
Correction:
<step_3>Hence $x = 4$.</step_3>
<answer>\\boxed{4}</answer>"""


def test_splice_copies_the_prefix_byte_for_byte() -> None:
    seg = segment(STUDENT)
    c = parse(CRITIQUE)
    solution = splice_solution(seg, c)
    assert solution == (
        "<step_1>Let $x$ be the number.  Then $2x + 3 = 11$.</step_1>\n"
        "<step_2>So $2x = 8$ </step_2>\n"
        "<step_3>Hence $x = 4$.</step_3>\n"
        "<answer>\\boxed{4}</answer>"
    )
    assert fidelity(seg, c, solution) == 1.0
    again = segment(solution)
    assert [s.text for s in again.steps[:2]] == [s.text for s in seg.steps[:2]]


def test_case_a_reproduces_the_whole_solution() -> None:
    seg = segment(STUDENT)
    c = ParsedCritique(
        case=Case.A,
        pivotal_step=None,
        summary=[StepVerdict(step=i, verdict=Verdict.correct) for i in (1, 2, 3)],
    )
    assert copied_prefix_len(c, 3) == 3
    assert splice_solution(seg, c) == STUDENT


def test_feedback_is_summary_then_solution() -> None:
    seg = segment(STUDENT)
    c = parse(CRITIQUE)
    feedback = render_feedback(c, splice_solution(seg, c))
    summary, solution = feedback.split("\n\nSolution:\n")
    assert summary.splitlines() == [
        "Summary:",
        "Step 1: Correct",
        "Step 2: Correct",
        "Step 3: Incorrect -- 8 / 2 is 4, not 5",
    ]
    assert solution.startswith("<step_1>Let $x$ be the number.  Then")


def test_fidelity_in_scribe_mode() -> None:
    seg = segment(STUDENT)
    c = parse(CRITIQUE)
    exact = join_tagged(["Let $x$ be the number. Then $2x + 3 = 11$.", "So $2x = 8$", "Hence $x = 4$."], "\\boxed{4}")
    assert fidelity(seg, c, exact) == 1.0  # whitespace differences do not count
    paraphrase = join_tagged(["Let the number be $x$, so $2x+3=11$.", "So $2x = 8$", "x = 4"], "\\boxed{4}")
    assert fidelity(seg, c, paraphrase) == 0.5
    assert fidelity(seg, c, "no steps at all\n\n") == 0.0
    first = ParsedCritique(case=Case.D, pivotal_step=1, summary=c.summary, body="x", body_kind=BodyKind.solution)
    assert fidelity(seg, first, "anything") == 1.0  # nothing before step 1 to copy


def test_repair_near_copies() -> None:
    seg = segment(STUDENT)
    c = parse(CRITIQUE)
    near = join_tagged(["Let $x$ be the number. Then $2x+3=11$.", "So 2x = 8", "Hence $x = 4$."], "\\boxed{4}")
    repaired = repair_near_copies(seg, c, near)
    assert fidelity(seg, c, repaired) == 1.0
    steps = segment(repaired).steps
    assert steps[0].text == seg.steps[0].text  # the student's exact bytes are back
    assert steps[2].text == "Hence $x = 4$."  # the correction is untouched
    far = join_tagged(["Completely different.", "So $2x = 8$", "x=4"], "\\boxed{4}")
    assert segment(repair_near_copies(seg, c, far)).steps[0].text == "Completely different."
    assert repair_near_copies(seg, c, "   ") == "   "


def test_splice_on_processbench_solutions(processbench: list[dict[str, Any]]) -> None:
    # For every real solution with a labelled first error, splicing keeps exactly the steps before it.
    for row in processbench:
        if row["label"] < 1:
            continue
        n = row["label"] + 1  # 1-based first wrong step
        seg = segment(join_tagged(row["steps"]))
        summary = [
            StepVerdict(step=i, verdict=Verdict.correct if i < n else Verdict.incorrect, note="")
            for i in range(1, len(row["steps"]) + 1)
        ]
        c = ParsedCritique(case=Case.D, pivotal_step=n, summary=summary, body=f"<step_{n}>fixed</step_{n}>")
        solution = splice_solution(seg, c)
        got = [s.text for s in segment(solution).steps]
        assert got == [*row["steps"][: n - 1], "fixed"]
