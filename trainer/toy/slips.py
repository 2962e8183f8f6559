"""Imperfect solutions with realistic slips: what the pretrained solver imitates, so it is wrong on some problems.

A slip is a forgotten carry in an addition that needs one (98 + 9 = 97), a forgotten borrow in a subtraction
(102 - 5 = 107), or a small slip of the result (+-1, +-2, +-10); every later step is consistent with the slipped
value, as a person's would be. At a point where two additive operations follow each other the writer may merge
them into one step, as the reference derivation does. Greedy decoding follows the majority of the training
targets, so a carry forgotten in more than half of them is forgotten every time: the slip rates place the
solver's accuracy (../shared/TOY-WORLD.md: carry 0.7 gave a greedy student near 41%).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from shared.arithmetic import ADDITIVE, Chain, apply, format_number, multi_equation
from trainer.toy.world import render_solution

SMALL_SLIPS = (-2, -1, 1, 2, -10, 10)


@dataclass(frozen=True)
class SlipSettings:
    """Slip rates of the solutions the solver is pretrained on."""

    carry: float = 0.7  # P(forget the carry) in an addition that needs one
    borrow: float = 0.0  # P(forget the borrow) in a subtraction that needs one
    small: float = 0.04  # P(a small slip of the result), per step
    merge: float = 0.1  # P(merge an additive operation into the step before it), where both are additive

    def __post_init__(self) -> None:
        for name, p in asdict(self).items():
            if not 0 <= p <= 1:
                raise ValueError(f"slip setting {name}={p}: expected a probability in [0, 1]")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _digits(x: int) -> list[int]:
    return [int(d) for d in reversed(str(x))]


def _number(digits: list[int]) -> int:
    return int("".join(str(d) for d in reversed(digits)) or "0")


def needs_carry(a: int, b: int) -> bool:
    """Whether a + b (both >= 0) carries in some column."""
    da, db = _digits(a), _digits(b)
    return any(x + y >= 10 for x, y in zip(da, db + [0] * (len(da) - len(db)), strict=False))


def add_without_carry(a: int, b: int) -> int:
    """a + b column by column with every carry forgotten (98 + 9 = 97)."""
    da, db = _digits(a), _digits(b)
    width = max(len(da), len(db))
    da, db = da + [0] * (width - len(da)), db + [0] * (width - len(db))
    return _number([(x + y) % 10 for x, y in zip(da, db, strict=True)])


def needs_borrow(a: int, b: int) -> bool:
    """Whether a - b (a >= b >= 0) borrows in some column."""
    da, db = _digits(a), _digits(b)
    return any(x < y for x, y in zip(da, db + [0] * (len(da) - len(db)), strict=False))


def subtract_without_borrow(a: int, b: int) -> int:
    """a - b column by column with every borrow forgotten (102 - 5 = 107)."""
    da, db = _digits(a), _digits(b)
    db = db + [0] * (len(da) - len(db))
    return _number([(x - y) % 10 for x, y in zip(da, db, strict=True)])


@dataclass(frozen=True)
class Attempt:
    """A written solution: its steps, the running values it wrote, and where it first went wrong."""

    steps: tuple[str, ...]
    groups: tuple[tuple[int, int], ...]  # the operations [start, end) each step applies
    results: tuple[Fraction, ...]  # the result each step wrote
    first_wrong: int | None  # 1-based step whose result is first wrong (given a right running value), or None
    answer: Fraction
    text: str
    wrong_char: int | None  # offset in `text` of the first wrong character (a digit of the first wrong result)

    @property
    def correct(self) -> bool:
        return self.first_wrong is None


def _groups(chain: Chain, rng: random.Random, merge: float) -> list[tuple[int, int]]:
    groups: list[tuple[int, int]] = []
    for i, (symbol, _) in enumerate(chain.ops):
        prev_additive = bool(groups) and all(s in ADDITIVE for s, _ in chain.ops[groups[-1][0] : groups[-1][1]])
        if symbol in ADDITIVE and prev_additive and rng.random() < merge:
            groups[-1] = (groups[-1][0], i + 1)
        else:
            groups.append((i, i + 1))
    return groups


def _slipped(value: Fraction, symbol: str, operand: Fraction, rng: random.Random, slips: SlipSettings) -> Fraction:
    """The result one operation gets when the writer may forget a carry or a borrow."""
    right = apply(value, symbol, operand)
    if value.denominator != 1 or operand.denominator != 1 or value < 0:
        return right
    a, b = int(value), int(operand)
    if symbol == "+" and needs_carry(a, b) and rng.random() < slips.carry:
        return Fraction(add_without_carry(a, b))
    if symbol == "-" and a >= b and needs_borrow(a, b) and rng.random() < slips.borrow:
        return Fraction(subtract_without_borrow(a, b))
    return right


def write_attempt(
    chain: Chain,
    rng: random.Random,
    slips: SlipSettings,
    *,
    groups: list[tuple[int, int]] | None = None,
    force_wrong: bool = False,
    tries: int = 20,
) -> Attempt:
    """One solution with slips drawn from `slips`, in the given step grouping (default: drawn with
    `slips.merge`). `force_wrong`: redrawn until it has a slip; after `tries` draws without one, a small slip is
    put on a random step."""
    for t in range(tries + 1):
        out = _write(chain, rng, slips, groups, force=force_wrong and t == tries)
        if not force_wrong or not out.correct:
            return out
    raise AssertionError("unreachable: the last draw forces a slip")


def _write(
    chain: Chain,
    rng: random.Random,
    slips: SlipSettings,
    groups: list[tuple[int, int]] | None,
    *,
    force: bool,
) -> Attempt:
    groups = groups if groups is not None else _groups(chain, rng, slips.merge)
    forced_step = rng.randrange(len(groups)) if force else -1
    truth = chain.values()
    value = chain.start
    steps: list[str] = []
    results: list[Fraction] = []
    first_wrong: int | None = None
    for k, (i, j) in enumerate(groups):
        ops = chain.ops[i:j]
        result = value
        for symbol, operand in ops:
            result = _slipped(result, symbol, operand, rng, slips)
        right_here = value == truth[i]
        if k == forced_step and first_wrong is None:
            result += rng.choice([d for d in SMALL_SLIPS if result + d >= 0 and result + d != truth[j]])
        elif rng.random() < slips.small:
            result += rng.choice([d for d in SMALL_SLIPS if result + d >= 0] or [1])
        if first_wrong is None and right_here and result != truth[j]:
            first_wrong = k + 1
        steps.append(multi_equation(value, ops, result))
        results.append(result)
        value = result
    text = render_solution(steps, value)
    wrong_char = None
    if first_wrong is not None:
        i, j = groups[first_wrong - 1]
        line_start = text.index(f"<step_{first_wrong}>") + len(f"<step_{first_wrong}>")
        eq = steps[first_wrong - 1]
        head = eq[: eq.rindex("= ") + 2]
        wrote, right = format_number(results[first_wrong - 1]), format_number(truth[j])
        common = next(
            (n for n, (x, y) in enumerate(zip(wrote, right, strict=False)) if x != y), min(len(wrote), len(right))
        )
        wrong_char = line_start + len(head) + common
    return Attempt(
        steps=tuple(steps),
        groups=tuple(groups),
        results=tuple(results),
        first_wrong=first_wrong,
        answer=value,
        text=text,
        wrong_char=wrong_char,
    )
