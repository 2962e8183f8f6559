"""Data loading with the field mappings of GSM8K, MATH-500 (real files in ../shared/data) and
OpenMathReasoning; and `prepare-data`'s filters, splits and manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO
from trainer.data import DataError, Problem, detect_format, load_problems, write_problems
from trainer.prepare import PrepareSettings, prepare
from trainer.toy.tiny_model import build_tiny_qwen3


def test_gsm8k_and_math500_mappings() -> None:
    gsm = load_problems(str(DATA / "gsm8k" / "test.jsonl"), limit=5)
    assert gsm[0].answer == "18" and "Janet" in gsm[0].problem and "####" not in gsm[0].solution
    math = load_problems(str(DATA / "math500" / "test.jsonl"), fmt="math500")
    assert len(math) == 500 and math[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert math[0].id == "test/precalculus/807.json" and "\\boxed" in math[0].solution


def test_openmathreasoning_mapping_and_formats(tmp_path: Path) -> None:
    rows = [{"problem": "Find x.", "generated_solution": "x is \\boxed{2}.", "expected_answer": "2", "x": 1}]
    path = tmp_path / "omr.json"
    path.write_text(json.dumps(rows))
    [p] = load_problems(str(path))
    assert (p.problem, p.answer, p.solution) == ("Find x.", "2", "x is \\boxed{2}.")
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "omr.parquet")
    assert load_problems(str(tmp_path / "omr.parquet"))[0].answer == "2"
    with pytest.raises(DataError, match="cannot tell the data format"):
        detect_format(["text"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "a", "answer": "1"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2"):
        load_problems(str(bad))
    missing = tmp_path / "m.json"
    missing.write_text('[{"problem": "p"}]')
    with pytest.raises(DataError, match="missing field 'expected_answer'"):
        load_problems(str(missing), fmt="openmathreasoning")


def test_difficulty_filter_keeps_the_hard_problems(tmp_path: Path) -> None:
    problems = [Problem(id=f"p{i}", problem=f"What is {i}+{i}?", answer=str(2 * i)) for i in range(10)]
    problems.append(Problem(id="noans", problem="Prove it.", answer=""))

    def sampler(texts: list[str], k: int) -> list[list[str]]:
        # problem i is solved i times out of k
        out = []
        for t in texts:
            i = int(t.split()[2].split("+")[0])
            out.append([f"\\boxed{{{2 * i}}}"] * min(i, k) + ["\\boxed{-1}"] * (k - min(i, k)))
        return out

    manifest = prepare(problems, tmp_path, PrepareSettings(samples=8, keep_below=5, test_size=2), sampler, {})
    assert manifest["counts"] == {
        "input": 11,
        "after_format_filter": 10,
        "after_difficulty_filter": 5,
        "train": 3,
        "test": 2,
    }
    assert manifest["rejected_by_format"] == {"no reference answer": 1}
    kept = {p.id for p in load_problems(str(tmp_path / "train.jsonl")) + load_problems(str(tmp_path / "test.jsonl"))}
    assert kept == {"p0", "p1", "p2", "p3", "p4"}
    counts = [json.loads(x) for x in (tmp_path / "difficulty.jsonl").read_text().splitlines()]
    assert [c["correct"] for c in counts] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]


def test_prepare_data_cli_with_a_tiny_solver(tmp_path: Path) -> None:
    model = build_tiny_qwen3(tmp_path / "tiny")
    src = tmp_path / "gsm.jsonl"
    lines = (DATA / "gsm8k" / "test.jsonl").read_text().splitlines()[:10]
    src.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "prepare-data", "--source", str(src), "--out", str(tmp_path / "d"),
         "--solver", str(model), "--backend", "transformers", "--samples", "2", "--max-new-tokens", "8",
         "--test-size", "3"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["counts"]["after_difficulty_filter"] == 10  # a random model solves nothing
    assert manifest["counts"]["train"] == 7 and manifest["backend"] == "transformers"
    assert "sampling 2 solutions per problem" in out.stderr  # the progress bar
    assert len(load_problems(str(tmp_path / "d" / "test.jsonl"))) == 3


def test_write_problems_round_trip(tmp_path: Path) -> None:
    ps = [Problem(id="a", problem="p", answer="1", solution="s")]
    assert write_problems(ps, tmp_path / "x.jsonl") == 1
    assert load_problems(str(tmp_path / "x.jsonl")) == ps
