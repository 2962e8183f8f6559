"""Problems for training and evaluation: loaders for JSONL/JSON/Parquet files and Hugging Face datasets, with
the field mappings of OpenMathReasoning, GSM8K, MATH-500 and our own arithmetic chains."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.answers import extract_final_answer


@dataclass(frozen=True)
class Problem:
    """One problem: its statement, reference answer and (optional) worked reference solution."""

    id: str
    problem: str
    answer: str
    solution: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


_THINK_END = re.compile(r"</think>", re.IGNORECASE)
_THINK = re.compile(r"</?think>", re.IGNORECASE)


def complete_solution(text: str) -> str:
    """The complete solution of a generated one: OpenMathReasoning's `generated_solution` is a long reasoning
    trace in `<think>...</think>` followed by the clean solution with its boxed answer; the teacher gets the part
    after the reasoning (the whole text when there is no reasoning block, or nothing after it)."""
    closes = list(_THINK_END.finditer(text))
    if closes:
        after = text[closes[-1].end() :].strip()
        if after:
            return after
    return _THINK.sub("", text).strip()


class DataError(ValueError):
    """A data file or row does not have the fields its format needs."""


def _gsm8k(row: dict[str, Any]) -> tuple[str, str, str]:
    solution, _, answer = str(row["answer"]).rpartition("####")
    return str(row["question"]), answer.strip().replace(",", ""), solution.strip()


MAPPINGS = {
    "stepalign": lambda r: (r["problem"], r["answer"], r.get("solution", "")),
    "openmathreasoning": lambda r: (r["problem"], r["expected_answer"], r.get("generated_solution", "")),
    "gsm8k": _gsm8k,
    "math500": lambda r: (r["problem"], r["answer"], r.get("solution", "")),
    "arithmetic": lambda r: (r["problem"], r["answer"], r.get("solution", "")),
}


def detect_format(columns: Iterable[str]) -> str:
    cols = set(columns)
    if {"problem", "expected_answer"} <= cols:
        return "openmathreasoning"
    if {"question", "answer"} <= cols:
        return "gsm8k"
    if {"problem", "answer"} <= cols:
        return "stepalign"
    raise DataError(
        f"cannot tell the data format from the columns {sorted(cols)}: expected problem+answer (stepalign, "
        "math500, arithmetic), problem+expected_answer (openmathreasoning) or question+answer (gsm8k)"
    )


def _rows(source: str, split: str) -> list[dict[str, Any]]:
    path = Path(source)
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{i}: not JSON: {exc}") from exc
        return rows
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of rows")
        return data
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    if path.exists():
        raise DataError(f"{path}: unsupported file type; use .jsonl, .json or .parquet")
    from datasets import load_dataset  # a Hugging Face dataset name

    return [dict(r) for r in load_dataset(source, split=split)]


def load_problems(source: str, *, fmt: str = "auto", split: str = "train", limit: int | None = None) -> list[Problem]:
    """Problems from a file or a hub dataset, mapped to (problem, answer, solution)."""
    rows = _rows(source, split)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{source}: no rows")
    fmt = detect_format(rows[0].keys()) if fmt == "auto" else fmt
    mapping = MAPPINGS[fmt]
    out = []
    for i, row in enumerate(rows):
        try:
            problem, answer, solution = mapping(row)
        except KeyError as exc:
            raise DataError(f"{source} row {i}: missing field {exc} for format {fmt}") from exc
        answer = str(answer).strip()
        solution = complete_solution(str(solution or ""))
        if not answer and solution:
            answer = extract_final_answer(str(solution)) or ""
        pid = str(row.get("id") or row.get("unique_id") or hashlib.sha256(str(problem).encode()).hexdigest()[:12])
        out.append(Problem(id=pid, problem=str(problem), answer=answer, solution=str(solution or "")))
    return out


def write_problems(problems: Iterable[Problem], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(p.to_json(), ensure_ascii=False) for p in problems]
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return len(lines)
