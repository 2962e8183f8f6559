"""Arithmetic-chain problems: the toy world the checker critic judges exactly and the CPU demo trains on.

A problem is a start value and a list of operations ("Start with 37. Add 48. Subtract 19. Multiply by 2.");
a solution writes one `a op b = c` equation per operation, in order, then `<answer>\\boxed{c}</answer>`. A step
may also apply several consecutive additions and subtractions at once (`98 + 9 - 5 = 102`, the "merged"
derivation of `merged_solution_steps`); a multiplication or division always has a step of its own, so a step is
never ambiguous about operator precedence. Values are exact rationals, so a check never depends on floating point.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

OPS = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/"}
_WORDS = {"+": "Add", "-": "Subtract", "*": "Multiply by", "/": "Divide by"}
_SYMBOL = {"+": "+", "-": "-", "*": "*", "×": "*", "x": "*", "·": "*", "/": "/", "÷": "/", "−": "-"}

_NUM = r"[-−]?\d+(?:\.\d+)?(?:/\d+)?"
_START = re.compile(rf"\bstart\s+(?:with|at|from)\s+({_NUM})", re.IGNORECASE)
_OP = re.compile(rf"\b(add|subtract|multiply(?:\s+it)?\s+by|divide(?:\s+it)?\s+by)\s+({_NUM})", re.IGNORECASE)
_SYM = r"[-+*/×x·÷−]"
_EQUATION = re.compile(rf"^\s*\$?\s*({_NUM})\s*({_SYM})\s*({_NUM})\s*=\s*({_NUM})\s*\$?\s*\.?\s*$")
_MULTI = re.compile(rf"^\s*\$?\s*({_NUM})((?:\s*{_SYM}\s*{_NUM})+)\s*=\s*({_NUM})\s*\$?\s*\.?\s*$")
_TERM = re.compile(rf"\s*({_SYM})\s*({_NUM})")
ADDITIVE = frozenset("+-")


class NotArithmeticChain(ValueError):
    """The problem is not an arithmetic chain; the message says what form is accepted."""


def parse_number(text: str) -> Fraction:
    return Fraction(text.replace("−", "-"))


def format_number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


@dataclass(frozen=True)
class Chain:
    """A start value and the operations to apply, in order."""

    start: Fraction
    ops: tuple[tuple[str, Fraction], ...]  # (symbol, operand), symbol in + - * /

    def values(self) -> list[Fraction]:
        """The running value before the first operation and after each one."""
        out = [self.start]
        for symbol, operand in self.ops:
            out.append(apply(out[-1], symbol, operand))
        return out

    @property
    def answer(self) -> Fraction:
        return self.values()[-1]

    def problem_text(self) -> str:
        ops = " ".join(f"{_WORDS[s]} {format_number(x)}." for s, x in self.ops)
        return f"Start with {format_number(self.start)}. {ops} What is the result?"

    def solution_steps(self) -> list[str]:
        """The correct solution, one equation per operation."""
        vals = self.values()
        return [equation(vals[i], s, x, vals[i + 1]) for i, (s, x) in enumerate(self.ops)]

    def merged_groups(self) -> list[tuple[int, int]]:
        """The operations as [start, end) index runs: each maximal run of consecutive additions/subtractions is
        one group, every multiplication or division a group of its own."""
        groups: list[tuple[int, int]] = []
        for i, (symbol, _) in enumerate(self.ops):
            if groups and symbol in ADDITIVE and self.ops[groups[-1][0]][0] in ADDITIVE:
                groups[-1] = (groups[-1][0], i + 1)
            else:
                groups.append((i, i + 1))
        return groups

    def merged_solution_steps(self) -> list[str]:
        """A different valid derivation: one step per group of `merged_groups` ("98 + 9 - 5 = 102"), so its
        intermediate values differ from `solution_steps` wherever two additive operations are adjacent."""
        vals = self.values()
        return [multi_equation(vals[i], self.ops[i:j], vals[j]) for i, j in self.merged_groups()]


ACCEPTED = (
    "an arithmetic chain: 'Start with <number>.' followed by operations 'Add <n>.', 'Subtract <n>.', "
    "'Multiply by <n>.', 'Divide by <n>.'"
)


def apply(a: Fraction, symbol: str, b: Fraction) -> Fraction:
    if symbol == "+":
        return a + b
    if symbol == "-":
        return a - b
    if symbol == "*":
        return a * b
    if b == 0:
        raise NotArithmeticChain("the chain divides by zero")
    return a / b


def equation(a: Fraction, symbol: str, b: Fraction, c: Fraction, style: str = "{a} {op} {b} = {c}") -> str:
    return style.format(a=format_number(a), op=symbol, b=format_number(b), c=format_number(c))


def multi_equation(a: Fraction, ops: Sequence[tuple[str, Fraction]], c: Fraction) -> str:
    """`a op1 b1 op2 b2 ... = c`, spaced."""
    terms = " ".join(f"{symbol} {format_number(x)}" for symbol, x in ops)
    return f"{format_number(a)} {terms} = {format_number(c)}"


def parse_chain(problem: str) -> Chain:
    """Read a chain from a problem statement; raise `NotArithmeticChain` saying what is accepted."""
    start = _START.search(problem)
    if not start:
        raise NotArithmeticChain(f"no 'Start with <number>' found; the checker critic accepts {ACCEPTED}")
    ops = []
    for m in _OP.finditer(problem, start.end()):
        word = m.group(1).split()[0].lower()
        ops.append((OPS[word], parse_number(m.group(2))))
    if not ops:
        raise NotArithmeticChain(f"no operations found after the start value; the checker critic accepts {ACCEPTED}")
    chain = Chain(start=parse_number(start.group(1)), ops=tuple(ops))
    chain.values()  # raises on division by zero
    return chain


@dataclass(frozen=True)
class Equation:
    """One student step read as `a op b = c`, with the symbol exactly as the student wrote it."""

    a: Fraction
    symbol: str  # normalised: + - * /
    written_symbol: str
    b: Fraction
    c: Fraction


def parse_equation(step: str) -> Equation | None:
    """The step as an equation, or None if it is not one `a op b = c` line."""
    m = _EQUATION.match(step)
    if not m:
        return None
    written = m.group(2)
    return Equation(
        a=parse_number(m.group(1)),
        symbol=_SYMBOL[written],
        written_symbol=written,
        b=parse_number(m.group(3)),
        c=parse_number(m.group(4)),
    )


@dataclass(frozen=True)
class StepEquation:
    """One student step read as `a op1 b1 [op2 b2 ...] = c`: one operation, or several applied left to right."""

    a: Fraction
    ops: tuple[tuple[str, Fraction], ...]  # (normalised symbol, operand)
    written_symbols: tuple[str, ...]  # as the student wrote them
    c: Fraction

    def lhs(self) -> str:
        """The left side as written (operators as the student wrote them, spaced)."""
        terms = " ".join(f"{w} {format_number(x)}" for w, (_, x) in zip(self.written_symbols, self.ops, strict=True))
        return f"{format_number(self.a)} {terms}"

    def value(self) -> Fraction:
        """The left side's value, left to right."""
        v = self.a
        for symbol, x in self.ops:
            v = apply(v, symbol, x)
        return v


def parse_step(step: str) -> StepEquation | None:
    """The step as an equation with one or more operations, or None if it is not one such line."""
    m = _MULTI.match(step)
    if not m:
        return None
    terms = _TERM.findall(m.group(2))
    return StepEquation(
        a=parse_number(m.group(1)),
        ops=tuple((_SYMBOL[w], parse_number(x)) for w, x in terms),
        written_symbols=tuple(w for w, _ in terms),
        c=parse_number(m.group(3)),
    )


def random_chain(rng: random.Random, *, length: tuple[int, int] = (3, 6), max_operand: int = 50) -> Chain:
    """A random chain with integer values (division only where it is exact)."""
    value = rng.randint(1, max_operand)
    start = value
    ops: list[tuple[str, Fraction]] = []
    for _ in range(rng.randint(*length)):
        symbol = rng.choice("+-*/")
        if symbol == "/":
            divisors = [d for d in range(2, 10) if value % d == 0]
            if not divisors:
                symbol = "+"
            else:
                operand = rng.choice(divisors)
                ops.append((symbol, Fraction(operand)))
                value //= operand
                continue
        operand = rng.randint(2, 9) if symbol == "*" else rng.randint(1, max_operand)
        ops.append((symbol, Fraction(operand)))
        value = int(apply(Fraction(value), symbol, Fraction(operand)))
    return Chain(start=Fraction(start), ops=tuple(ops))
