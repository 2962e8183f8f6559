"""Final-answer extraction and math-verify equivalence, on MATH-500's 500 real reference answers."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import itertools
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.answers import AnswerChecker, CheckerConfig, extract_final_answer, last_boxed, normalize
from shared.schemas import AnswerStatus

# The pairs of distinct MATH-500 answers the checker calls equivalent (bench/answer_pairs.py lists them all), with
# the project's verdict on each. A change in math-verify or in our guards shows up here.
KNOWN_EQUIVALENT = {
    ("(-2,1)", "-2,1"): "true: tuple written with or without parentheses",
    ("-2,1", "1,-2"): "true: an unordered list of solutions",
    ("(-2,1)", "1,-2"): "direction: '1,-2' as the reference is a set of solutions, which (-2,1) lists",
    ("10,\\!080", "10080"): "true: thousands separator",
    ("2 \\sqrt{5}", "2\\sqrt{5}"): "true: spacing",
    ("5", "x=5"): "true: an assignment is read as its value",
    ("\\frac14", "\\frac{1}{4}"): "true: brace-less fraction",
    ("120", "120^\\circ"): "quirk accepted: degree sign ignored",
    ("30", "30^\\circ"): "quirk accepted: degree sign ignored",
    ("36", "36^\\circ"): "quirk accepted: degree sign ignored",
    ("90", "90^\\circ"): "quirk accepted: degree sign ignored",
    ("15", "15\\mbox{ cm}^2"): "quirk accepted: units ignored",
    ("36", "\\$36"): "quirk accepted: currency sign ignored",
    ("36^\\circ", "\\$36"): "quirk accepted: both units ignored",
    ("40", "40_9"): "quirk accepted: base subscript ignored",
}


@pytest.fixture(scope="module")
def checker() -> Iterator[AnswerChecker]:
    with AnswerChecker(CheckerConfig(workers=2)) as c:
        yield c


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{1} then later \\boxed{\\sqrt{x^{2}+1}}", "\\sqrt{x^{2}+1}"),
        ("\\fbox{7}", "7"),
        ("\\boxed {\\{1, 2\\}}", "\\{1, 2\\}"),
        ("<answer>\\boxed{3}</answer> and \\boxed{9} in prose", "3"),
        ("<step_1>2+2</step_1><answer>$4$</answer>", "4"),
        ("<answer>\\boxed{5}", "5"),
        ("<think>\\boxed{1}</think> the result is \\boxed{2}", "2"),
        ("<think>\\boxed{1}</think> no answer given", None),
        ("final: \\boxed 5", "5"),
        ("unbalanced \\boxed{3", None),
        ("no answer here", None),
        ("<answer>  </answer>", None),
        ("\\boxed{}", None),
    ],
)
def test_extract_final_answer(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


def test_last_boxed_skips_an_unclosed_last_box() -> None:
    assert last_boxed("\\boxed{1} and \\boxed{2") == "1"


def test_math500_references_boxed_in_a_sentence(checker: AnswerChecker, math500: list[dict[str, Any]]) -> None:
    answers = [row["answer"] for row in math500]
    texts = [f"Thus, the answer is $\\boxed{{{a}}}$, as required." for a in answers]
    extracted = [extract_final_answer(t) for t in texts]
    assert extracted == [a.strip() for a in answers]
    results = checker.check_many(list(zip(extracted, answers, strict=True)))
    bad = [(a, r.status) for a, r in zip(answers, results, strict=True) if r.status is not AnswerStatus.equivalent]
    assert not bad


@pytest.mark.parametrize(("pair", "verdict"), sorted(KNOWN_EQUIVALENT.items()))
def test_known_equivalent_pairs(checker: AnswerChecker, pair: tuple[str, str], verdict: str) -> None:
    a, b = pair
    forward, backward = checker.check_many([(b, a), (a, b)])
    assert forward.equivalent or backward.equivalent, verdict


def test_equation_is_not_its_right_hand_side(checker: AnswerChecker) -> None:
    # math-verify alone calls these equivalent (the equation's right-hand side is 0).
    assert checker.check("5x - 7y + 11z + 4 = 0", "0").status is AnswerStatus.not_equivalent
    assert checker.check("x = 5", "5").status is AnswerStatus.equivalent
    assert checker.check("y=2x+3", "2x+3").status is AnswerStatus.equivalent


def test_random_distinct_pairs_are_rarely_equivalent(checker: AnswerChecker, math500: list[dict[str, Any]]) -> None:
    distinct = sorted({row["answer"] for row in math500})
    assert len(distinct) == 301
    pairs = random.Random(0).sample(list(itertools.combinations(distinct, 2)), 1500)
    results = checker.check_many([(b, a) for a, b in pairs])
    found = {p for p, r in zip(pairs, results, strict=True) if r.equivalent}
    assert found <= set(KNOWN_EQUIVALENT), found - set(KNOWN_EQUIVALENT)


def test_a_thousand_checks_are_all_decided(math500: list[dict[str, Any]]) -> None:
    # MATH-500's answers against themselves and against their neighbours: 62% are plain numbers (compared
    # exactly, in-process), the rest go to math-verify in the pool. (Throughput: bench/answer_speed.py.)
    answers = [row["answer"] for row in math500]
    shifted = answers[1:] + answers[:1]
    pairs = list(zip(answers, answers, strict=True)) + list(zip(shifted, answers, strict=True))
    with AnswerChecker(CheckerConfig(workers=2)) as fresh:
        results = fresh.check_many(pairs)
    assert len(results) == 1000
    assert sum(r.status is AnswerStatus.equivalent for r in results[:500]) == 500
    assert sum(r.status is AnswerStatus.equivalent for r in results[500:]) <= 5  # repeated answers
    assert not [r for r in results if r.status is AnswerStatus.undecided]


def test_plain_numbers_are_compared_exactly(checker: AnswerChecker) -> None:
    assert checker.check("0.5", "1/2").status is AnswerStatus.equivalent
    assert checker.check("$12$", "12.0").status is AnswerStatus.equivalent
    assert checker.check("-7", "7").status is AnswerStatus.not_equivalent
    assert checker.check("10000000000000000000001", "10000000000000000000000").status is AnswerStatus.not_equivalent


def test_pathological_input_is_undecided_within_its_timeout() -> None:
    with AnswerChecker(CheckerConfig(workers=1, timeout_s=1, hard_timeout_s=8)) as c:
        c.check("1", "1+1")  # start the worker before timing
        start = time.perf_counter()
        result = c.check("9^{9^{9^{9}}}", "3")
        elapsed = time.perf_counter() - start
        assert result.status is AnswerStatus.undecided and result.equivalent is None
        assert elapsed < 8
        assert c.check("\\frac{2}{4}", "\\frac12").status is AnswerStatus.equivalent


def test_hard_timeout_replaces_a_stuck_pool() -> None:
    # math-verify's own budget (30 s) is longer than the parent's deadline (1.5 s): the parent gives up,
    # reports undecided and replaces the worker, and the next check still works.
    with AnswerChecker(CheckerConfig(workers=1, timeout_s=30, hard_timeout_s=1.5)) as c:
        c.check("1", "2")
        start = time.perf_counter()
        assert c.check("9^{9^{9^{9}}}", "3").status is AnswerStatus.undecided
        assert time.perf_counter() - start < 5
        assert c.check("0.5", "\\frac{1}{2}").status is AnswerStatus.equivalent


def test_checks_from_a_worker_thread_are_decided(checker: AnswerChecker) -> None:
    # math-verify's signal.alarm fails in threads; the process pool keeps its timeouts working from any thread.
    with cf.ThreadPoolExecutor(2) as threads:
        results = list(threads.map(lambda p: checker.check(*p), [("\\pi/2", "\\frac{\\pi}{2}"), ("3", "4")]))
    assert [r.status for r in results] == [AnswerStatus.equivalent, AnswerStatus.not_equivalent]


async def test_async_api(checker: AnswerChecker) -> None:
    results = await asyncio.gather(
        checker.acheck("2/4", "\\frac{1}{2}"),
        checker.acheck_solution("<step_1>...</step_1><answer>\\boxed{7}</answer>", "8"),
        checker.acheck(None, "1"),
        checker.acheck("1", None),
    )
    assert [r.status for r in results] == [
        AnswerStatus.equivalent,
        AnswerStatus.not_equivalent,
        AnswerStatus.no_answer,
        AnswerStatus.no_reference,
    ]
    assert results[1].student_answer == "7"


async def test_async_hard_timeout_is_undecided() -> None:
    with AnswerChecker(CheckerConfig(workers=1, timeout_s=30, hard_timeout_s=1.0)) as c:
        result = await c.acheck("9^{9^{9^{9}}}", "3")
        assert result.status is AnswerStatus.undecided
        assert (await c.acheck("3", "3.0")).status is AnswerStatus.equivalent


def test_check_solutions_and_normalize(checker: AnswerChecker) -> None:
    got = checker.check_solutions(["\\boxed{4}", "no answer", "\\boxed{5}"], "4")
    assert [r.status for r in got] == [
        AnswerStatus.equivalent,
        AnswerStatus.no_answer,
        AnswerStatus.not_equivalent,
    ]
    assert normalize("\\left( 3, \\dfrac{\\pi}{2} \\right).") == normalize("(3,\\frac{\\pi}{2})")
