"""Arithmetic-chain problems as training data, with reference solutions written in the student's step format."""

from __future__ import annotations

import random

from shared.arithmetic import format_number, random_chain
from trainer.data import Problem


def make_problems(
    count: int, *, seed: int = 0, length: tuple[int, int] = (2, 4), max_operand: int = 20
) -> list[Problem]:
    """`count` distinct chains, each with its answer and a step-tagged reference solution."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Problem] = []
    while len(out) < count:
        chain = random_chain(rng, length=length, max_operand=max_operand)
        text = chain.problem_text()
        if text in seen:
            continue
        seen.add(text)
        steps = chain.solution_steps()
        solution = "\n".join(f"<step_{i}>{s}</step_{i}>" for i, s in enumerate(steps, 1))
        answer = format_number(chain.answer)
        solution += f"\n<answer>\\boxed{{{answer}}}</answer>"
        out.append(Problem(id=f"chain-{seed}-{len(out)}", problem=text, answer=answer, solution=solution))
    return out
