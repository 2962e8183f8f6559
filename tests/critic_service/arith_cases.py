"""Arithmetic-chain solutions with errors injected at known steps, and the critique each must get."""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

from shared.arithmetic import Chain, apply, format_number, random_chain

KINDS = (
    "correct",
    "wrong_result",
    "wrong_operand",
    "skipped_step",
    "missing_answer",
    "truncated",
    "wrong_result_no_answer",
    "slip_recovered",
    "bad_final_copy",
)
_SYMBOLS = {"+": ["+"], "-": ["-", "−"], "*": ["*", "×", "x"], "/": ["/", "÷"]}


@dataclass(frozen=True)
class Injected:
    chain: Chain
    kind: str
    solution: str
    case: str
    pivot: int | None


def _render(
    eqs: list[tuple[Fraction, str, Fraction, Fraction]], answer: str | None, rng: random.Random
) -> tuple[str, bool]:
    """The solution text, and whether the answer sentence is a step of its own (paragraph layout)."""
    spaced = rng.random() < 0.7
    symbols = {s: rng.choice(v) for s, v in _SYMBOLS.items()}
    lines = []
    for a, s, b, c in eqs:
        sym = symbols[s]
        sep = " " if spaced or sym == "x" else ""
        lines.append(f"{format_number(a)}{sep}{sym}{sep}{format_number(b)}{sep}={sep}{format_number(c)}")
    layout = rng.choice(["tags", "tags_open", "step_lines", "paragraphs"])
    if layout == "tags":
        body = "\n".join(f"<step_{i}>{x}</step_{i}>" for i, x in enumerate(lines, 1))
    elif layout == "tags_open":
        body = "\n".join(f"<step_{i}> {x}" for i, x in enumerate(lines, 1))
    elif layout == "step_lines":
        body = "\n".join(f"Step {i}: {x}" for i, x in enumerate(lines, 1))
    else:
        body = "\n\n".join(lines)
    if answer is None:
        return body, False
    if layout == "paragraphs":
        return body + f"\n\nSo the answer is \\boxed{{{answer}}}.", True
    return body + f"\n<answer>\\boxed{{{answer}}}</answer>", False


def _make(
    chain: Chain,
    kind: str,
    eqs: list[tuple[Fraction, str, Fraction, Fraction]],
    answer: str | None,
    rng: random.Random,
    case: str,
    pivot: int | None,
    pivot_on_answer_step: bool = False,
) -> Injected:
    """`pivot_on_answer_step`: the error is the final answer itself, so when the answer sentence is a step of its
    own, that step is the pivotal one."""
    text, answer_step = _render(eqs, answer, rng)
    if pivot_on_answer_step and answer_step:
        pivot = len(eqs) + 1
    return Injected(chain, kind, text, case, pivot)


def _chain_eqs(start: Fraction, ops: list[tuple[str, Fraction]]) -> list[tuple[Fraction, str, Fraction, Fraction]]:
    out, v = [], start
    for s, x in ops:
        c = apply(v, s, x)
        out.append((v, s, x, c))
        v = c
    return out


def make_case(rng: random.Random, kind: str) -> Injected:
    """One solution of the given kind; retries the chain until the kind's preconditions hold."""
    while True:
        chain = random_chain(rng, length=(2, 7))
        ops = list(chain.ops)
        n = len(ops)
        good = _chain_eqs(chain.start, ops)
        final = format_number(chain.answer)
        k = rng.randint(1, n)
        if kind == "correct":
            return _make(chain, kind, good, final, rng, "A", None)
        if kind in ("wrong_result", "wrong_result_no_answer"):
            a, s, b, c = good[k - 1]
            wrong_c = c + rng.choice([-3, -2, -1, 1, 2, 10])
            eqs = [*good[: k - 1], (a, s, b, wrong_c), *_chain_eqs(wrong_c, ops[k:])]
            if kind == "wrong_result":
                return _make(chain, kind, eqs, format_number(eqs[-1][3]), rng, "D", k)
            return _make(chain, kind, eqs, None, rng, "C", k)
        if kind == "wrong_operand":
            a, s, b, _ = good[k - 1]
            wrong_b = b + rng.choice([1, 2, 3])
            eqs = [*good[: k - 1], (a, s, wrong_b, apply(a, s, wrong_b))]
            eqs += _chain_eqs(eqs[-1][3], ops[k:])
            if eqs[-1][3] == chain.answer:  # e.g. 0 * 5 and 0 * 6: the slip changes nothing
                continue
            return _make(chain, kind, eqs, format_number(eqs[-1][3]), rng, "D", k)
        if kind == "skipped_step":
            if n < 2 or (k < n and ops[k - 1] == ops[k]):
                continue
            rest = _chain_eqs(good[k - 1][0], ops[k:])
            eqs = [*good[: k - 1], *rest]
            if not eqs:
                continue
            value = eqs[-1][3]
            if value == chain.answer:
                continue
            pivot = k if k < n else k - 1
            return _make(chain, kind, eqs, format_number(value), rng, "D", pivot, pivot_on_answer_step=k == n)
        if kind == "missing_answer":
            return _make(chain, kind, good, None, rng, "C", n)
        if kind == "truncated":
            if n < 2:
                continue
            m = rng.randint(1, n - 1)
            return _make(chain, kind, good[:m], None, rng, "C", m)
        if kind == "slip_recovered":
            if k == n:
                continue
            a, s, b, c = good[k - 1]
            eqs = [*good[: k - 1], (a, s, b, c + 1), *good[k:]]
            return _make(chain, kind, eqs, final, rng, "B", k)
        if kind == "bad_final_copy":
            return _make(chain, kind, good, format_number(chain.answer + 1), rng, "D", n, pivot_on_answer_step=True)
        raise ValueError(kind)


def generate(count: int, seed: int = 0) -> list[Injected]:
    rng = random.Random(seed)
    return [make_case(rng, KINDS[i % len(KINDS)]) for i in range(count)]
