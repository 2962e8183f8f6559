"""Teacher contexts per condition: the StepAlignFB prompt (the critic's feedback on this very rollout) and the
RefSol prompt (the problem's complete reference solution), each fitted to a token budget before it enters the
prompt.

TRL cuts over-long teacher prompts from the left, which would silently drop the question; so the context is fitted
here instead, and every cut is counted:
- feedback: `shared.feedback_fit` elides the leading verbatim copies of the student's steps (the paper's case-C
  compression) and compresses the summary before anything else; only then is the end cut;
- reference: the middle is cut, never the end, so the teacher always sees the final answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.feedback_fit import fit_feedback
from shared.prompts import teacher_prompt

ELLIPSIS = "\n[...]\n"


@dataclass(frozen=True)
class TeacherContext:
    """A teacher prompt (chat-templated text) and how its context was fitted to the budget."""

    text: str
    context_tokens: int
    truncated: bool  # the end of the context was cut (feedback: possibly the correction)
    elided_steps: int = 0  # copied student steps left out of the feedback
    middle_cut: bool = False  # reference: the middle was cut, the final answer kept


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def fit_to_tokens(text: str, tokenizer: Any, budget: int) -> tuple[str, int, bool]:
    """`text` cut to at most `budget` tokens (keeping its beginning); its token count; whether it was cut."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= budget:
        return text, len(ids), False
    return tokenizer.decode(ids[:budget], skip_special_tokens=False), budget, True


def _answer_tail(text: str) -> str:
    """The end of a solution that states its final answer: from the start of the paragraph (else the line) that
    holds the last `\\boxed`, to the end."""
    at = text.rfind("\\boxed")
    if at < 0:
        return text[text.rstrip().rfind("\n") + 1 :]
    para = text.rfind("\n\n", 0, at)
    return text[para + 2 :] if para >= 0 else text[text.rfind("\n", 0, at) + 1 :]


def fit_reference(text: str, tokenizer: Any, budget: int) -> tuple[str, int, bool]:
    """A reference solution within `budget` tokens, keeping its final answer: the beginning, `[...]`, and the
    paragraph with the last boxed answer. (text, tokens, whether the middle was cut)."""
    total = _count(tokenizer, text)
    if total <= budget:
        return text, total, False
    tail = _answer_tail(text)
    tail_fit, tail_tokens, _ = fit_to_tokens(tail, tokenizer, max(1, budget // 2))
    if tail_fit != tail:  # an enormous last paragraph: keep its end, where the answer is
        ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
        tail_fit = tokenizer.decode(ids[-max(1, budget // 2) :], skip_special_tokens=False)
        tail_tokens = _count(tokenizer, tail_fit)
    head_budget = max(0, budget - tail_tokens - _count(tokenizer, ELLIPSIS))
    head, _, _ = fit_to_tokens(text[: len(text) - len(tail)], tokenizer, head_budget)
    out = f"{head}{ELLIPSIS}{tail_fit}"
    return out, _count(tokenizer, out), True


def chat(tokenizer: Any, user: str, *, thinking: bool) -> str:
    """The user turn in the model's chat template, ready for the assistant's answer."""
    messages = [{"role": "user", "content": user}]
    try:
        text: str = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
        )
    except (TypeError, ValueError):  # a tokenizer without a chat template
        text = f"{user}\n\n"
    return text


def teacher_context(
    condition: str,
    *,
    problem: str,
    tokenizer: Any,
    budget: int,
    thinking: bool,
    feedback: str = "",
    reference_solution: str = "",
    student_steps: Sequence[str] = (),
) -> TeacherContext:
    """The self-teacher's prompt for one rollout under `condition` ('stepalign' or 'refsol'). `student_steps` are
    the rollout's steps as the critic segmented them (`Critique.steps`): the feedback's verbatim copies of them
    are what may be elided to fit the budget."""
    if condition == "stepalign":
        fitted = fit_feedback(feedback, student_steps, lambda t: _count(tokenizer, t), budget)
        text, n, cut = fitted.text, fitted.tokens, False
        if fitted.over_budget:
            text, n, cut = fit_to_tokens(fitted.text, tokenizer, budget)
        user = teacher_prompt("stepalign", problem=problem, feedback=text)
        return TeacherContext(chat(tokenizer, user, thinking=thinking), n, cut, elided_steps=fitted.elided_steps)
    text, n, middle = fit_reference(reference_solution, tokenizer, budget)
    user = teacher_prompt("refsol", problem=problem, reference_solution=text)
    return TeacherContext(chat(tokenizer, user, thinking=thinking), n, truncated=False, middle_cut=middle)
