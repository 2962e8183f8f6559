"""Prompt templates: stable versions, every field filled, the rules the critic and teachers must follow."""

from __future__ import annotations

import pytest

from shared.prompts import (
    CRITIC_SYSTEM,
    NO_FINAL_ANSWER,
    STUDENT,
    TEACHER_REFSOL,
    TEACHER_STEPALIGN,
    PromptError,
    PromptTemplate,
    critic_messages,
    critic_prompt_version,
    student_prompt,
    teacher_prompt,
)
from shared.schemas import FeedbackMode


def test_versions_are_stable_hashes_of_the_text() -> None:
    t = PromptTemplate("x", "Solve $problem")
    assert t.version == PromptTemplate("x", "Solve $problem").version
    assert t.version != PromptTemplate("x", "Solve $problem!").version
    assert len(t.version) == 12
    assert critic_prompt_version(FeedbackMode.splice) != critic_prompt_version(FeedbackMode.scribe)
    assert len({STUDENT.version, TEACHER_REFSOL.version, TEACHER_STEPALIGN.version}) == 3


def test_missing_field_is_a_clear_error() -> None:
    with pytest.raises(PromptError, match=r"needs \['problem'\]"):
        STUDENT.render()
    with pytest.raises(PromptError, match="no teacher prompt for condition 'grpo'"):
        teacher_prompt("grpo", problem="p")


def test_values_are_not_reinterpreted() -> None:
    # Problems are full of '$' and braces; substituted text is never treated as a template.
    text = student_prompt("If $x = \\frac{1}{2}$ and $$y$$, find ${z}.")
    assert "If $x = \\frac{1}{2}$ and $$y$$, find ${z}." in text
    assert "<step_1>" in text and "<answer>\\boxed{...}</answer>" in text


@pytest.mark.parametrize("mode", list(FeedbackMode))
def test_critic_prompt_asks_for_the_schema(mode: FeedbackMode) -> None:
    system = CRITIC_SYSTEM[mode].render()
    for token in ("Case:", "Pivotal step:", "Summary:", "Step 1: Correct", "Incorrect --", "faithful scribe"):
        assert token in system
    assert ("Correction:" in system) is (mode is FeedbackMode.splice)
    assert ("Solution:" in system) is (mode is FeedbackMode.scribe)
    messages = critic_messages(
        problem="What is 2+3?",
        steps=["2+3 = 6"],
        student_answer="\\boxed{6}",
        reference_answer="5",
        reference_solution="2+3=5",
        mode=mode,
    )
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "What is 2+3?" in user and "<step_1>2+3 = 6</step_1>" in user and "(1 steps)" in user
    assert "Final answer: 5" in user and "Worked solution:\n2+3=5" in user
    assert "Student's final answer: \\boxed{6}" in user


def test_critic_prompt_states_the_students_final_answer_or_its_absence() -> None:
    # The critic's rules decide C (no final answer) and D (a wrong one) from it, so it must be in the prompt.
    def user(answer: str | None) -> str:
        m = critic_messages(problem="p", steps=["2+3 = 6"], student_answer=answer, reference_answer="5",
                            reference_solution=None)  # fmt: skip
        return m[1]["content"]

    assert "Student's final answer: \\boxed{7}" in user("\\boxed{7}")
    assert f"Student's final answer: {NO_FINAL_ANSWER}" in user(None)
    assert f"Student's final answer: {NO_FINAL_ANSWER}" in user("   ")
    assert "without a final answer" in NO_FINAL_ANSWER


def test_retry_turns_carry_the_errors() -> None:
    messages = critic_messages(
        problem="p",
        steps=["a", "b"],
        student_answer=None,
        reference_answer="1",
        reference_solution=None,
        previous=[("Case: Q", ["line 1: expected a 'Case: A|B|C|D' line"])],
    )
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "Case: Q"
    assert "- line 1: expected a 'Case: A|B|C|D' line" in messages[3]["content"]
    assert "Worked solution" not in messages[1]["content"]


def test_teacher_prompts() -> None:
    sa = teacher_prompt("stepalign", problem="Find x.", feedback="Summary:\nStep 1: Correct")
    assert "Find x." in sa and "Summary:\nStep 1: Correct" in sa and "never mention the feedback" in sa
    rs = teacher_prompt("refsol", problem="Find x.", reference_solution="x = 2 because ...")
    assert "x = 2 because ..." in rs and "do not copy" in rs
