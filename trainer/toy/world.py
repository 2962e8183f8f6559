"""The toy world's problems: arithmetic chains with difficulty knobs, written in the student's step format, each
with a reference solution that takes a different valid derivation.

The student writes one operation per step, steps on their own lines:
`<step_1>49 * 2 = 98</step_1>\\n<step_2>98 + 9 = 107</step_2>\\n...\\n<answer>\\boxed{306}</answer>` (the same
layout the critic's feedback uses, so a copied prefix is token for token the student's text). The reference
solution merges every run of consecutive additions/subtractions into one step (`98 + 9 - 5 = 102`) and keeps each
multiplication on its own step, so its intermediate values differ from the student's wherever two additive
operations are adjacent: a RefSol teacher that follows the reference prefers another path even where the student
is right, which a reference with the student's own intermediate values cannot show.

Problems are split into train and test by a hash of their text, so held-out problems never appear in training.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from shared.arithmetic import Chain, format_number
from trainer.data import Problem

SPLITS = ("train", "test")


@dataclass(frozen=True)
class WorldSettings:
    """Difficulty knobs (the defaults are ../shared/TOY-WORLD.md's set-up)."""

    start: tuple[int, int] = (1, 50)  # the start value, inclusive range
    n_ops: tuple[int, int] = (3, 5)  # operations per problem
    add: tuple[int, int] = (1, 9)  # operand range of Add and Subtract
    multiply: tuple[int, int] = (2, 4)  # operand range of Multiply
    max_value: int = 999  # no running value goes above this (a subtraction never goes below 0)
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # relative odds of Add, Subtract, Multiply
    test_share: float = 0.1  # share of all problems held out for evaluation (by a hash of the text)

    def __post_init__(self) -> None:
        for name in ("start", "n_ops", "add", "multiply"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"world setting {name}={(lo, hi)}: expected 0 <= low <= high")
        if self.n_ops[0] < 1 or self.multiply[0] < 1:
            raise ValueError("world settings: at least one operation, and multipliers >= 1")
        if self.start[0] > self.max_value:
            raise ValueError(f"world setting start={self.start} exceeds max_value={self.max_value}")
        if not 0 < self.test_share < 1:
            raise ValueError(f"world setting test_share={self.test_share}: expected a share in (0, 1)")
        if min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError(f"world setting weights={self.weights}: expected non-negative odds, not all 0")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def toy_chain(rng: random.Random, world: WorldSettings) -> Chain:
    """A random chain within the knobs: every running value stays in [0, max_value]."""
    value = rng.randint(*world.start)
    start = value
    ops: list[tuple[str, Fraction]] = []
    for _ in range(rng.randint(*world.n_ops)):
        choices: list[tuple[str, list[int]]] = []
        adds = [b for b in range(world.add[0], world.add[1] + 1) if value + b <= world.max_value]
        subs = [b for b in range(world.add[0], world.add[1] + 1) if value - b >= 0]
        muls = [b for b in range(world.multiply[0], world.multiply[1] + 1) if value * b <= world.max_value]
        for symbol, operands, weight in zip("+-*", (adds, subs, muls), world.weights, strict=True):
            if operands and weight > 0:
                choices.append((symbol, operands))
        if not choices:  # e.g. 999 with only additions allowed: stop the chain here
            break
        weights = [world.weights["+-*".index(s)] for s, _ in choices]
        symbol, operands = rng.choices(choices, weights=weights)[0]
        operand = rng.choice(operands)
        ops.append((symbol, Fraction(operand)))
        value = value + operand if symbol == "+" else value - operand if symbol == "-" else value * operand
    if not ops:
        raise ValueError(f"world settings {world} allow no operation from start value {start}")
    return Chain(start=Fraction(start), ops=tuple(ops))


def split_of(problem_text: str, world: WorldSettings) -> str:
    """'test' for a fixed share of problem texts (by hash), 'train' for the rest."""
    h = int.from_bytes(hashlib.sha256(problem_text.encode()).digest()[:8], "big")
    return "test" if h / 2**64 < world.test_share else "train"


def render_solution(steps: list[str], answer: Fraction | str) -> str:
    """Steps in the student format, one per line, then the boxed answer."""
    value = answer if isinstance(answer, str) else format_number(answer)
    tagged = [f"<step_{i}>{s}</step_{i}>" for i, s in enumerate(steps, start=1)]
    return "\n".join([*tagged, f"<answer>\\boxed{{{value}}}</answer>"])


def student_solution(chain: Chain) -> str:
    """The correct solution in the student's derivation: one operation per step."""
    return render_solution(chain.solution_steps(), chain.answer)


def reference_solution(chain: Chain) -> str:
    """The correct solution in the reference's derivation: consecutive additive operations merged per step."""
    return render_solution(chain.merged_solution_steps(), chain.answer)


def derivations_differ(chain: Chain) -> bool:
    """Whether the reference's intermediate values differ from the student's (some additive run is merged)."""
    return len(chain.merged_groups()) < len(chain.ops)


def toy_chains(count: int, *, seed: int, split: str, world: WorldSettings | None = None) -> list[Chain]:
    """`count` distinct chains of `split` ('train' or 'test'), reproducible from `seed`."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    world = world or WorldSettings()
    rng = random.Random(f"toy-{split}-{seed}")
    seen: set[str] = set()
    out: list[Chain] = []
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 50 * count + 1000:
            raise ValueError(f"only {len(out)} distinct {split} problems found for {count} asked; widen the knobs")
        chain = toy_chain(rng, world)
        text = chain.problem_text()
        if text in seen or split_of(text, world) != split:
            continue
        seen.add(text)
        out.append(chain)
    return out


def to_problem(chain: Chain, pid: str) -> Problem:
    """A training/eval row: the reference answer and the reference (merged-derivation) solution."""
    return Problem(
        id=pid, problem=chain.problem_text(), answer=format_number(chain.answer), solution=reference_solution(chain)
    )


def toy_problems(
    count: int, *, seed: int = 0, split: str = "train", world: WorldSettings | None = None
) -> list[Problem]:
    """`count` distinct problems of `split` as `trainer.data.Problem` rows (write them with `write_problems`)."""
    chains = toy_chains(count, seed=seed, split=split, world=world)
    return [to_problem(c, f"toy-{split}-{seed}-{i}") for i, c in enumerate(chains)]
