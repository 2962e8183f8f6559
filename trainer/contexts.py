"""Teacher contexts per condition: the StepAlignFB prompt (the critic's feedback on this very rollout) and the
RefSol prompt (the problem's reference solution), each cut to a token budget before it enters the prompt.

TRL cuts over-long teacher prompts from the left, which would silently drop the question; so the context is
trimmed here instead, from its end, and the trim is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.prompts import teacher_prompt


@dataclass(frozen=True)
class TeacherContext:
    """A teacher prompt (chat-templated text) and how much of its context was cut."""

    text: str
    context_tokens: int
    truncated: bool


def fit_to_tokens(text: str, tokenizer: Any, budget: int) -> tuple[str, int, bool]:
    """`text` cut to at most `budget` tokens (keeping its beginning); its token count; whether it was cut."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= budget:
        return text, len(ids), False
    return tokenizer.decode(ids[:budget], skip_special_tokens=False), budget, True


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
) -> TeacherContext:
    """The self-teacher's prompt for one rollout under `condition` ('stepalign' or 'refsol')."""
    source = feedback if condition == "stepalign" else reference_solution
    fitted, n, cut = fit_to_tokens(source, tokenizer, budget)
    if condition == "stepalign":
        user = teacher_prompt("stepalign", problem=problem, feedback=fitted)
    else:
        user = teacher_prompt("refsol", problem=problem, reference_solution=fitted)
    return TeacherContext(text=chat(tokenizer, user, thinking=thinking), context_tokens=n, truncated=cut)
