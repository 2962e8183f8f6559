"""Distinct, valid critique requests (random arithmetic chains the checker engine critiques), for tests and bench
scripts that must not have their requests coalesced or answered from the cache."""

from __future__ import annotations

import random
from typing import Any

from shared.arithmetic import format_number, random_chain


def distinct_requests(count: int, seed: int = 0, **extra: Any) -> list[dict[str, Any]]:
    """`count` different requests; every other one has a wrong step."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(out) < count:
        chain = random_chain(rng, length=(3, 6))
        steps = chain.solution_steps()
        if len(out) % 2:
            k = rng.randrange(len(steps))
            a, rest = steps[k].rsplit("=", 1)
            steps[k] = f"{a}= {int(rest) + 1}"
        answer = steps[-1].rsplit("=", 1)[1].strip()
        text = "\n".join(f"<step_{j}>{s}</step_{j}>" for j, s in enumerate(steps, 1))
        text += f"\n<answer>\\boxed{{{answer}}}</answer>"
        if text in seen:
            continue
        seen.add(text)
        body = {"problem": chain.problem_text(), "reference_answer": format_number(chain.answer)}
        out.append({**body, "student_solution": text, **extra})
    return out
