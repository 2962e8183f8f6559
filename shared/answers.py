"""Final-answer extraction and equivalence checking (math-verify in a process pool).

math-verify bounds its work with `signal.alarm`, which only works in a process's main thread: from a worker
thread (a FastAPI sync endpoint, asyncio's default executor) it raises. So checks run in a `ProcessPoolExecutor`
whose workers call math-verify from their main thread with its own timeouts on, and the parent adds a hard
deadline on top: a check that overruns it is reported as undecided and the pool is replaced, so one
pathological answer can neither hang a request nor poison later ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import multiprocessing
import os
import re
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from shared.schemas import AnswerCheck, AnswerStatus

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_BARE = re.compile(r"\\boxed[ \t]+([^\s$]+)")
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.IGNORECASE | re.DOTALL)
_THINK_END = re.compile(r"</think>", re.IGNORECASE)


def _braced(text: str, open_brace: int) -> str | None:
    """Content of the brace group whose '{' is at `open_brace`, honouring nesting and escaped braces."""
    depth = 0
    i = open_brace
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1 : i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` or `\\fbox{...}` (or bare `\\boxed 5`) in `text`."""
    for m in reversed(list(_BOX.finditer(text))):
        content = _braced(text, m.end() - 1)
        if content is not None:
            return content.strip()
    bare = list(_BOX_BARE.finditer(text))
    return bare[-1].group(1) if bare else None


def extract_final_answer(text: str) -> str | None:
    """The final answer of a solution: the last boxed value inside the last <answer> block, else that block's
    text, else the last boxed value anywhere after any reasoning block. None if there is no final answer."""
    closes = list(_THINK_END.finditer(text))
    if closes:
        text = text[closes[-1].end() :]
    blocks = _ANSWER.findall(text)
    if blocks:
        block = blocks[-1]
        boxed = last_boxed(block)
        if boxed is not None:
            return boxed or None
        plain = block.strip().strip("$").strip()
        return plain or None
    boxed = last_boxed(text)
    return boxed or None


_NOISE = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |\$|\s+")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")


def normalize(answer: str) -> str:
    """A conservative textual normal form: equal normal forms are certainly equivalent answers."""
    s = _TEXT_WRAP.sub(r"\1", answer)
    s = _NOISE.sub("", s)
    s = s.replace("dfrac", "frac").replace("tfrac", "frac")
    return s.rstrip(".")


_PLAIN_NUMBER = re.compile(r"^\s*\$?\s*(-?\d+(?:\.\d+)?(?:/[1-9]\d*)?)\s*\$?\s*$")


def _exact_numbers(student: str, reference: str) -> bool | None:
    """Exact equality when both answers are plain integers, decimals or a/b fractions; None otherwise."""
    a, b = _PLAIN_NUMBER.match(student), _PLAIN_NUMBER.match(reference)
    if a is None or b is None:
        return None
    try:
        return Fraction(a.group(1)) == Fraction(b.group(1))
    except ValueError:  # more digits than int() may convert (sys.get_int_max_str_digits): not "plain"
        return None


_ASSIGNMENT = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?\s*=")


def _equation_for_value(student: str, reference: str) -> bool:
    """An equation such as "5x - 7y + 4 = 0" given where the reference is a plain value (not "x = 5")."""
    return "=" in student and "=" not in reference and not _ASSIGNMENT.match(student)


@functools.lru_cache(maxsize=8192)
def _parse_boxed(answer: str, timeout_s: int) -> Any:
    """math-verify's parse of one answer, remembered per worker: a reference is compared with many samples."""
    from math_verify import parse  # imported in the worker: sympy is heavy

    return parse("\\boxed{" + answer + "}", parsing_timeout=timeout_s, raise_on_error=True)


def _verify_in_worker(reference: str, student: str, timeout_s: int) -> bool | None:
    """Runs in a pool worker's main thread, where math-verify's own signal-based timeouts work.
    True/False when decided, None when math-verify timed out."""
    from math_verify import verify
    from math_verify.errors import TimeoutException

    try:
        gold = _parse_boxed(reference, timeout_s)
        pred = _parse_boxed(student, timeout_s)
        if not gold or not pred:
            return False
        return bool(verify(gold, pred, timeout_seconds=timeout_s, raise_on_error=True))
    except TimeoutException:
        return None
    except Exception:  # math-verify raises assorted sympy errors on answers it cannot parse
        return False


def _warm_up() -> None:
    import math_verify  # noqa: F401


@dataclass(frozen=True)
class CheckerConfig:
    """Settings of the answer checker."""

    workers: int = 2  # processes; math-verify is CPU-bound and single-threaded
    timeout_s: int = 3  # math-verify's own per-parse and per-verify budget
    hard_timeout_s: float = 12.0  # parent-side deadline per check; the pool is replaced when it is hit


_NO_MAIN_GUARD_EXIT = 87  # a worker's exit status when it found the main script using the checker at import
_MAIN_GUARD_HELP = (
    "AnswerChecker's worker processes start by re-importing the main script (multiprocessing 'spawn'), and this "
    'script uses the checker when it is imported: put the script\'s code under `if __name__ == "__main__":`'
)


class MainGuardError(RuntimeError):
    """The answer checker was used at the top level of a script that has no `if __name__ == "__main__":` guard."""


def _died_for_main_guard(pool: cf.ProcessPoolExecutor) -> bool:
    """Whether a broken pool's workers exited because the main script has no `__main__` guard."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.join(timeout=2)
        if proc.exitcode == _NO_MAIN_GUARD_EXIT:
            return True
    return False


class AnswerChecker:
    """Decides whether a student's final answer is equivalent to the reference, off the calling thread."""

    def __init__(self, config: CheckerConfig | None = None) -> None:
        self.config = config or CheckerConfig()
        self._lock = threading.Lock()
        self._pool: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor:
        if getattr(multiprocessing.current_process(), "_inheriting", False):
            # A worker being started is re-running the main script, which wants a pool of its own: without this
            # exit it would fail with a bare traceback and every check would come back "undecided".
            sys.stderr.write(f"error: {_MAIN_GUARD_HELP}\n")
            sys.stderr.flush()
            os._exit(_NO_MAIN_GUARD_EXIT)
        with self._lock:
            if self._pool is None:
                # spawn: the service and the trainer run threads (uvicorn, vLLM, torch); forking them is unsafe.
                ctx = multiprocessing.get_context("spawn")
                self._pool = cf.ProcessPoolExecutor(
                    max_workers=self.config.workers, mp_context=ctx, initializer=_warm_up
                )
            return self._pool

    def _replace_pool(self, broken: cf.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is not broken:
                return
            self._pool = None
        for proc in list(getattr(broken, "_processes", {}).values()):
            proc.kill()
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker processes."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> AnswerChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _trivial(student: str | None, reference: str | None) -> AnswerCheck | None:
        if reference is None or not reference.strip():
            return AnswerCheck(student_answer=student, status=AnswerStatus.no_reference)
        if student is None or not student.strip():
            return AnswerCheck(reference_answer=reference, status=AnswerStatus.no_answer)
        if _equation_for_value(student, reference):
            # math-verify reads "5x + 4 = 0" as its right-hand side, which would match a reference of 0.
            return AnswerCheck(
                student_answer=student,
                reference_answer=reference,
                equivalent=False,
                status=AnswerStatus.not_equivalent,
            )
        exact = _exact_numbers(student, reference)
        if exact is not None:  # both plain numbers: an exact comparison, no need for math-verify
            status = AnswerStatus.equivalent if exact else AnswerStatus.not_equivalent
            return AnswerCheck(student_answer=student, reference_answer=reference, equivalent=exact, status=status)
        if normalize(student) == normalize(reference):
            return AnswerCheck(
                student_answer=student,
                reference_answer=reference,
                equivalent=True,
                status=AnswerStatus.equivalent,
            )
        return None

    @staticmethod
    def _result(student: str, reference: str, decided: bool | None) -> AnswerCheck:
        if decided is None:
            status = AnswerStatus.undecided
        else:
            status = AnswerStatus.equivalent if decided else AnswerStatus.not_equivalent
        return AnswerCheck(student_answer=student, reference_answer=reference, equivalent=decided, status=status)

    def _submit(self, student: str, reference: str) -> tuple[cf.ProcessPoolExecutor, cf.Future[bool | None]]:
        pool = self._executor()
        return pool, pool.submit(_verify_in_worker, reference, student, self.config.timeout_s)

    def check(self, student: str | None, reference: str | None) -> AnswerCheck:
        """Compare two extracted answers, blocking the caller (any thread) up to the hard timeout."""
        return self.check_many([(student, reference)])[0]

    def check_many(self, pairs: Iterable[tuple[str | None, str | None]]) -> list[AnswerCheck]:
        """Compare many (student, reference) answer pairs in parallel; results in input order."""
        items = list(pairs)
        results: list[AnswerCheck | None] = [self._trivial(s, r) for s, r in items]
        pending: dict[int, tuple[cf.ProcessPoolExecutor, cf.Future[bool | None]]] = {}
        for i, (s, r) in enumerate(items):
            if results[i] is None:
                assert s is not None and r is not None
                pending[i] = self._submit(s, r)
        for i, (pool, fut) in pending.items():
            s, r = items[i]
            assert s is not None and r is not None
            try:
                decided = fut.result(timeout=self.config.hard_timeout_s)
            except (cf.TimeoutError, cf.process.BrokenProcessPool, cf.CancelledError) as exc:
                if isinstance(exc, cf.process.BrokenProcessPool) and _died_for_main_guard(pool):
                    self._replace_pool(pool)
                    raise MainGuardError(_MAIN_GUARD_HELP) from exc
                self._replace_pool(pool)
                decided = None
            results[i] = self._result(s, r, decided)
        return [r for r in results if r is not None]

    async def acheck(self, student: str | None, reference: str | None) -> AnswerCheck:
        """Async `check`: never blocks the event loop, never runs math-verify in a thread."""
        trivial = self._trivial(student, reference)
        if trivial is not None:
            return trivial
        assert student is not None and reference is not None
        pool, fut = self._submit(student, reference)
        try:
            decided = await asyncio.wait_for(asyncio.wrap_future(fut), timeout=self.config.hard_timeout_s)
        except (TimeoutError, cf.process.BrokenProcessPool, asyncio.CancelledError) as exc:
            unguarded = isinstance(exc, cf.process.BrokenProcessPool) and _died_for_main_guard(pool)
            self._replace_pool(pool)
            if unguarded:
                raise MainGuardError(_MAIN_GUARD_HELP) from exc
            if isinstance(exc, asyncio.CancelledError):
                raise
            decided = None
        return self._result(student, reference, decided)

    async def acheck_solution(self, solution: str, reference: str | None) -> AnswerCheck:
        """Extract the final answer of a whole solution and compare it with the reference."""
        return await self.acheck(extract_final_answer(solution), reference)

    def check_solutions(self, solutions: Sequence[str], reference: str | None) -> list[AnswerCheck]:
        """Blocking `acheck_solution` for many solutions to the same problem."""
        return self.check_many([(extract_final_answer(s), reference) for s in solutions])
