"""`stepalign-train eval` and `compare`: Avg@k, Maj@k, Pass@k and answer length, with bootstrap intervals, for
one model or every checkpoint of a run (a curve); JSON plus a Markdown table; several runs side by side as in
the paper's table (best checkpoint per metric, and the last one)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.answers import AnswerChecker, extract_final_answer
from shared.schemas import AnswerStatus
from trainer.data import Problem
from trainer.metrics import Correct, avg_at_k, bootstrap_ci, maj_at_k, majority_group, pass_at_k

METRICS = ("avg@k", "maj@k", "pass@k", "answer_length")


@dataclass
class Graded:
    answers: list[list[str | None]]
    correct: list[list[Correct]]
    lengths: list[list[int]]
    same: list[Callable[[int, int], bool]]


def grade(
    problems: Sequence[Problem], samples: Sequence[Sequence[str]], checker: AnswerChecker, count: Callable[[str], int]
) -> Graded:
    """Extract and check every sample; equivalence between a problem's samples for the majority vote."""
    answers = [[extract_final_answer(s) for s in row] for row in samples]
    flat = [(a, p.answer) for p, row in zip(problems, answers, strict=True) for a in row]
    checks = checker.check_many(flat)
    correct: list[list[Correct]] = []
    i = 0
    for row in answers:
        correct.append([checks[i + j].equivalent for j in range(len(row))])
        i += len(row)
    same: list[Callable[[int, int], bool]] = []
    for row in answers:
        distinct = sorted({a for a in row if a is not None})
        pairs = [(b, a) for x, a in enumerate(distinct) for b in distinct[x + 1 :]]
        verdicts = checker.check_many(pairs) if pairs else []
        equal = {(a, b) for (b, a), v in zip(pairs, verdicts, strict=True) if v.status is AnswerStatus.equivalent}
        same.append(
            lambda i, j, row=row, equal=equal: (
                row[i] == row[j] or (row[i], row[j]) in equal or (row[j], row[i]) in equal
            )
        )
    lengths = [[count(s) for s in row] for row in samples]
    return Graded(answers=answers, correct=correct, lengths=lengths, same=same)


def summarise(g: Graded, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Each metric with a 95% bootstrap interval over problems (percentages; length in tokens)."""
    per_avg = [sum(c is True for c in row) / len(row) for row in g.correct]
    per_pass = [float(any(c is True for c in row)) for row in g.correct]
    per_maj = []
    for row_a, row_c, eq in zip(g.answers, g.correct, g.same, strict=True):
        group = majority_group(row_a, eq)
        per_maj.append(float(group is not None and row_c[group[0]] is True))
    per_len = [sum(row) / len(row) for row in g.lengths]
    values = {
        "avg@k": (100 * avg_at_k(g.correct), per_avg, 100.0),
        "maj@k": (100 * maj_at_k(g.answers, g.correct, g.same), per_maj, 100.0),
        "pass@k": (100 * pass_at_k(g.correct), per_pass, 100.0),
        "answer_length": (sum(per_len) / len(per_len), per_len, 1.0),
    }
    out = {}
    for name, (value, per, scale) in values.items():
        lo, hi = bootstrap_ci(per, seed=seed)
        out[name] = {"value": round(value, 2), "ci95": [round(scale * lo, 2), round(scale * hi, 2)]}
    return out


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint of a run, in order; just `final/` (step -1) if it has none."""
    found = sorted((int(p.name.split("-")[1]), p) for p in run.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    if not found and (run / "final").exists():
        found = [(-1, run / "final")]
    return found


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    head = "| checkpoint | step | Avg@k | Maj@k | Pass@k | answer length |\n|---|---|---|---|---|---|"
    lines = [head]
    for r in rows:
        m = r["metrics"]
        cells = [f"{m[k]['value']} [{m[k]['ci95'][0]}, {m[k]['ci95'][1]}]" for k in METRICS]
        lines.append(f"| {r['name']} | {r['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare_table(runs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """The paper's table: per run, the best checkpoint per metric (with its step) and the last checkpoint."""
    lines = [
        "| run | Avg@k best (step) | Maj@k best (step) | Pass@k best (step) | Avg@k last | Maj@k last | Pass@k last "
        "| length last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, report in runs:
        rows = report["checkpoints"]
        best = []
        for k in ("avg@k", "maj@k", "pass@k"):
            top = max(rows, key=lambda r, k=k: (r["metrics"][k]["value"], -r["step"]))
            best.append(f"{top['metrics'][k]['value']} ({top['step']})")
        last = rows[-1]["metrics"]
        tail = [str(last[k]["value"]) for k in ("avg@k", "maj@k", "pass@k", "answer_length")]
        lines.append(f"| {name} | " + " | ".join(best + tail) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """eval.json (metrics), eval.md (the table) and samples.jsonl (every graded sample, so any number can be
    recomputed from what the models wrote)."""
    out.mkdir(parents=True, exist_ok=True)
    j, md = out / "eval.json", out / "eval.md"
    samples = report.pop("samples", [])
    j.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with (out / "samples.jsonl").open("w", encoding="utf-8") as f:
        for row in samples:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    k = report["k"]
    md.write_text(f"# Evaluation, k = {k}, {report['problems']} problems\n\n" + markdown_table(report["checkpoints"]))
    return j, md


def evaluate(
    models: Sequence[tuple[str, int, str]],
    problems: Sequence[Problem],
    *,
    k: int,
    make_sampler: Callable[[str], Callable[[list[str], int], list[list[str]]]],
    count: Callable[[str], int],
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Sample k solutions per problem from each (name, step, model path), grade them, summarise."""
    rows = []
    kept: list[dict[str, Any]] = []
    with AnswerChecker() as checker:
        for name, step, path in models:
            if progress is not None:
                progress(name)
            samples = make_sampler(path)([p.problem for p in problems], k)
            graded = grade(problems, samples, checker, count)
            rows.append({"name": name, "step": step, "model": path, "metrics": summarise(graded, seed=seed)})
            for p, texts, answers, correct in zip(problems, samples, graded.answers, graded.correct, strict=True):
                for i, (text, answer, ok) in enumerate(zip(texts, answers, correct, strict=True)):
                    kept.append({"checkpoint": name, "problem_id": p.id, "sample": i, "answer": answer,
                                 "correct": ok, "text": text})  # fmt: skip
    return {"k": k, "problems": len(problems), "checkpoints": rows, "samples": kept}
