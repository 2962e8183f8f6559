"""Audit the answer checker on MATH-500's reference answers.

1. Each of the 500 reference answers, boxed inside a sentence, is extracted and judged against itself.
2. Every pair of distinct reference answers is judged; the pairs found equivalent are printed, for review.

Run: .venv/bin/python bench/answer_pairs.py [--data ../shared/data/math500/test.jsonl] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from shared.answers import AnswerChecker, CheckerConfig, extract_final_answer

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "math500" / "test.jsonl"


def sentence(answer: str) -> str:
    return f"Putting it all together, the final answer is $\\boxed{{{answer}}}$. We are done."


def audit(data: Path, workers: int) -> dict[str, object]:
    answers = [json.loads(line)["answer"] for line in data.read_text().splitlines() if line.strip()]
    distinct = sorted(set(answers))
    with AnswerChecker(CheckerConfig(workers=workers)) as checker:
        t0 = time.perf_counter()
        extracted = [extract_final_answer(sentence(a)) for a in answers]
        self_checks = checker.check_many(list(zip(extracted, answers, strict=True)))
        t_self = time.perf_counter() - t0
        pairs = list(itertools.combinations(distinct, 2))
        t0 = time.perf_counter()
        # math-verify is not symmetric: judge both directions and call a pair equivalent if either says so.
        forward = checker.check_many([(b, a) for a, b in pairs])
        backward = checker.check_many([(a, b) for a, b in pairs])
        t_pairs = time.perf_counter() - t0
    failed_self = [
        {"answer": a, "extracted": e, "status": c.status.value}
        for a, e, c in zip(answers, extracted, self_checks, strict=True)
        if c.status.value != "equivalent"
    ]
    equivalent = [
        {"a": a, "b": b, "forward": f.status.value, "backward": r.status.value}
        for (a, b), f, r in zip(pairs, forward, backward, strict=True)
        if f.equivalent or r.equivalent
    ]
    undecided = sum(1 for f, r in zip(forward, backward, strict=True) if "undecided" in (f.status, r.status))
    return {
        "answers": len(answers),
        "distinct": len(distinct),
        "self_failures": failed_self,
        "self_seconds": round(t_self, 2),
        "pairs": len(pairs),
        "pair_checks": 2 * len(pairs),
        "pair_seconds": round(t_pairs, 2),
        "equivalent_pairs": equivalent,
        "undecided_pairs": undecided,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the full report here")
    args = ap.parse_args()
    report = audit(args.data, args.workers)
    print(f"{report['answers']} answers, {report['distinct']} distinct")
    print(f"self-equivalence failures: {len(report['self_failures'])} ({report['self_seconds']} s)")
    for f in report["self_failures"]:  # type: ignore[attr-defined]
        print("  FAIL", f)
    print(
        f"{report['pairs']} pairs ({report['pair_checks']} checks) in {report['pair_seconds']} s;"
        f" {len(report['equivalent_pairs'])} judged equivalent, {report['undecided_pairs']} undecided"
    )
    for p in report["equivalent_pairs"]:  # type: ignore[attr-defined]
        print(f"  {p['a']!r:40} ~ {p['b']!r:40} fwd={p['forward']} bwd={p['backward']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
