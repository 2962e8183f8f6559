"""Data loading with the field mappings of GSM8K, MATH-500 (real files in ../shared/data) and
OpenMathReasoning; and `prepare-data`'s filters, splits and manifest."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO
from tests.servers import ServerProcess
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


def _solution(value: int, formatted: bool) -> str:
    if formatted:
        return f"<step_1>The result is {value}.</step_1>\n<answer>\\boxed{{{value}}}</answer>"
    return f"The result is \\boxed{{{value}}}."


def test_difficulty_and_rollout_format_filters(tmp_path: Path) -> None:
    problems = [Problem(id=f"p{i}", problem=f"What is {i}+{i}?", answer=str(2 * i)) for i in range(10)]
    problems.append(Problem(id="noans", problem="Prove it.", answer=""))
    problems.append(Problem(id="p3-again", problem="What  is 3+3?", answer="6"))  # a second row of problem p3

    def sampler(texts: list[str], k: int) -> list[list[str]]:
        # problem i is solved i times out of k; problem 1's rollouts are not in the student format
        out = []
        for t in texts:
            i = int(t.split()[-1].split("+")[0])
            right, wrong = [2 * i] * min(i, k), [-1] * (k - min(i, k))
            out.append([_solution(v, formatted=i != 1) for v in right + wrong])
        return out

    manifest = prepare(problems, tmp_path, PrepareSettings(samples=8, keep_below=5, test_size=2), sampler, {})
    assert manifest["counts"] == {
        "input": 12,
        "after_dedup": 11,
        "after_format_filter": 10,
        "after_difficulty_filter": 5,
        "after_rollout_format_filter": 4,
        "train": 2,
        "test": 2,
        "unused": 0,
    }
    assert manifest["rejected_by_format"] == {"no reference answer": 1}
    kept = {p.id for p in load_problems(str(tmp_path / "train.jsonl")) + load_problems(str(tmp_path / "test.jsonl"))}
    assert kept == {"p0", "p2", "p3", "p4"}
    rows = [json.loads(x) for x in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in rows] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    assert rows[1]["format_share"] == 0.0 and rows[2]["format_share"] == 1.0


def _chain_rows(n_problems: int, rows_per_problem: int) -> list[dict[str, str]]:
    """OpenMathReasoning-shaped rows (several generated solutions per problem) about arithmetic chains, so the
    checker critic can judge them."""
    from shared.arithmetic import format_number, random_chain

    rng = random.Random(5)
    out, seen = [], set()
    while len(seen) < n_problems:
        chain = random_chain(rng, length=(2, 4), max_operand=20)
        if chain.problem_text() in seen:
            continue
        seen.add(chain.problem_text())
        steps = "\n".join(chain.solution_steps())
        for j in range(rows_per_problem):
            out.append({
                "problem": chain.problem_text(), "expected_answer": format_number(chain.answer),
                "generated_solution": f"<think>\nattempt {j}: let me work it out.\n</think>\n\n{steps}\n\n"
                                      f"The answer is \\boxed{{{format_number(chain.answer)}}}.",
                "problem_type": "has_answer_extracted", "generation_model": "DeepSeek-R1",
            })  # fmt: skip
    return out


def test_solvability_filter_asks_the_critic(critic: ServerProcess, tmp_path: Path) -> None:
    from shared.client import CriticPool

    proof = {"problem": "Prove that there are infinitely many primes.", "expected_answer": "1",
             "generated_solution": "Euclid. \\boxed{1}"}  # fmt: skip
    rows = [*_chain_rows(6, 2), proof]
    src = tmp_path / "omr.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = load_problems(str(src))

    answers = {p.problem: p.answer for p in problems}
    solved = problems[0].problem

    def sampler(texts: list[str], k: int) -> list[list[str]]:
        # formatted rollouts, all wrong except those of the first problem, which are all right
        return [[_solution(int(answers[t]) if t == solved else 10**6 + j, True) for j in range(k)] for t in texts]

    manifest = prepare(problems, tmp_path / "out", PrepareSettings(samples=3, keep_below=1, test_size=2), sampler,
                       {}, critic=lambda: CriticPool([critic.url]))  # fmt: skip
    c = manifest["counts"]
    assert (c["input"], c["after_dedup"], c["after_difficulty_filter"]) == (13, 7, 6)
    # the checker critic cannot judge the proof problem: it is dropped with the critic's own error code
    assert c["after_solvability_filter"] == 5
    assert manifest["rejected_by_solvability"] == {"critic: unsupported_problem": 1}
    assert c["train"] + c["test"] + c["unused"] == c["after_solvability_filter"]


def test_prepare_data_cli_with_a_tiny_solver_and_a_real_critic(critic: ServerProcess, tmp_path: Path) -> None:
    model = build_tiny_qwen3(tmp_path / "tiny")
    src = tmp_path / "omr.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _chain_rows(50, 4)))
    out = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "prepare-data", "--source", str(src), "--out", str(tmp_path / "d"),
         "--solver", str(model), "--backend", "transformers", "--samples", "2", "--max-new-tokens", "16",
         "--min-format-share", "0", "--critic-url", critic.url, "--train-size", "20", "--test-size", "10"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    c = manifest["counts"]
    assert (c["input"], c["after_dedup"], c["after_format_filter"]) == (200, 50, 50)
    assert c["after_difficulty_filter"] == 50  # a random model solves nothing
    # the checker critic finishes every problem from the solver's unfinished rollouts (valid case-C critiques)
    assert c["after_rollout_format_filter"] == 50 and c["after_solvability_filter"] == 50
    assert (
        c["train"] == 20 and c["test"] == 10 and c["train"] + c["test"] + c["unused"] == c["after_solvability_filter"]
    )
    train = load_problems(str(tmp_path / "d" / "train.jsonl"))
    test = load_problems(str(tmp_path / "d" / "test.jsonl"))
    assert not {p.problem for p in train} & {p.problem for p in test}  # split by problem: disjoint
    assert len({p.problem for p in train}) == 20  # and deduplicated
    assert all("<think>" not in p.solution and "\\boxed" in p.solution for p in train + test)
    assert manifest["backend"] == "transformers" and manifest["critic_urls"] == [critic.url]
    assert "sampling 2 solutions per problem" in out.stderr  # the progress bar


def test_write_problems_round_trip(tmp_path: Path) -> None:
    ps = [Problem(id="a", problem="p", answer="1", solution="s")]
    assert write_problems(ps, tmp_path / "x.jsonl") == 1
    assert load_problems(str(tmp_path / "x.jsonl")) == ps
