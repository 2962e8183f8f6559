"""Throughput of the answer checker on MATH-500 (pool start-up included), two workloads of 1,000 checks each:
answers against themselves and their neighbours (62% plain numbers, compared in-process), and LaTeX-only
answers against other LaTeX answers (every check goes to math-verify in the pool).

Run: .venv/bin/python bench/answer_speed.py [--workers 2] [--data ../shared/data/math500/test.jsonl]
Budget we hold ourselves to on a 2-core machine: under 10 s per workload.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from shared.answers import AnswerChecker, CheckerConfig

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "math500" / "test.jsonl"


def workloads(data: Path) -> dict[str, list[tuple[str, str]]]:
    answers = [json.loads(x)["answer"] for x in data.read_text().splitlines() if x.strip()]
    shifted = answers[1:] + answers[:1]
    mixed = list(zip(answers, answers, strict=True)) + list(zip(shifted, answers, strict=True))
    latex = sorted({a for a in answers if not re.fullmatch(r"-?\d+(\.\d+)?", a.strip())})
    hard = [(latex[(i + s) % len(latex)], latex[i]) for s in range(1, 10) for i in range(len(latex))][:1000]
    return {"mixed (self + neighbour)": mixed, "LaTeX only": hard}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    for name, pairs in workloads(args.data).items():
        start = time.perf_counter()
        with AnswerChecker(CheckerConfig(workers=args.workers)) as checker:
            results = checker.check_many(pairs)
        elapsed = time.perf_counter() - start
        undecided = sum(r.equivalent is None for r in results)
        print(f"{name}: {len(pairs)} checks in {elapsed:.2f} s ({len(pairs) / elapsed:.0f}/s), {undecided} undecided")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
