"""`eval`, `compare` and `analyze` on the tiny model: the JSON and Markdown reports, a curve over a run's
checkpoints, and the advantage plots and page for a StepAlignFB and a RefSol context on the same rollouts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from shared.arithmetic import format_number, random_chain
from shared.client import CriticClient
from shared.schemas import CritiqueRequest
from tests.conftest import DATA, REPO
from tests.servers import ServerProcess
from tests.trainer.runs import small_config
from trainer.train import run

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "trainer.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_eval_writes_json_and_table(root: Path, tmp_path: Path) -> None:
    gsm = tmp_path / "gsm20.jsonl"
    gsm.write_text("\n".join((DATA / "gsm8k" / "test.jsonl").read_text().splitlines()[:20]) + "\n")
    out = _cli("eval", "--model", str(root / "tiny"), "--data", str(gsm), "--k", "3", "--max-new-tokens", "8",
               "--backend", "transformers", "--out", str(tmp_path / "ev"))  # fmt: skip
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["k"] == 3 and report["problems"] == 20
    m = report["checkpoints"][0]["metrics"]
    assert set(m) == {"avg@k", "maj@k", "pass@k", "answer_length"}
    assert m["avg@k"]["value"] == 0.0 and m["pass@k"]["value"] == 0.0  # a random model solves nothing
    assert 0 < m["answer_length"]["value"] <= 8 and len(m["avg@k"]["ci95"]) == 2
    samples = [json.loads(x) for x in (tmp_path / "ev" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 20 * 3 and {s["sample"] for s in samples} == {0, 1, 2}
    assert 100 * sum(s["correct"] is True for s in samples) / len(samples) == m["avg@k"]["value"]
    table = (tmp_path / "ev" / "eval.md").read_text()
    assert "| checkpoint | step | Avg@k | Maj@k | Pass@k | answer length |" in table and table in out.stdout


def test_eval_curve_over_checkpoints_and_compare(root: Path, tmp_path: Path) -> None:
    runs = []
    for seed in (0, 1):
        config = small_config(root, "refsol", tmp_path / f"run{seed}", max_steps=2, seed=seed)
        run(config)
        _cli("eval", "--run", str(config.output_dir), "--data", str(root / "train.jsonl"), "--limit", "6",
             "--k", "2", "--max-new-tokens", "6", "--backend", "transformers")  # fmt: skip
        runs.append(config.output_dir / "eval")
    report = json.loads((runs[0] / "eval.json").read_text())
    assert [(r["name"], r["step"]) for r in report["checkpoints"]] == [("checkpoint-1", 1), ("checkpoint-2", 2)]
    out = _cli("compare", str(runs[0]), str(runs[1]), "--names", "seed0", "seed1", "--out", str(tmp_path / "t.md"))
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[0].startswith("| run | Avg@k best (step)") and "last" in lines[0]
    assert lines[2].startswith("| seed0 | ") and lines[3].startswith("| seed1 | ")
    assert "seed1" in out.stdout


def _rollouts(critic_url: str, path: Path) -> None:
    """Solutions with an error injected at step 3 (of 4 or 5), critiqued by the real checker critic."""
    import random

    rng = random.Random(7)
    requests = []
    for _ in range(3):
        chain = random_chain(rng, length=(4, 5))
        steps = chain.solution_steps()
        a, rest = steps[2].rsplit("=", 1)
        steps[2] = f"{a}= {int(rest) + 1}"  # a wrong result at step 3; later steps copied unchanged
        text = "\n".join(f"<step_{i}>{s}</step_{i}>" for i, s in enumerate(steps, 1))
        requests.append(
            CritiqueRequest(
                problem=chain.problem_text(),
                reference_answer=format_number(chain.answer),
                student_solution=text + "\n<answer>\\boxed{1}</answer>",
            )
        )

    async def ask() -> list[dict[str, object]]:
        async with CriticClient(critic_url) as client:
            out = []
            for r in requests:
                c = await client.critique(r)
                reference = "\n".join(f"<step_{i}>{s}</step_{i}>" for i, s in enumerate(c.steps.steps, 1))
                out.append({"problem": r.problem, "reference_solution": reference, "critique": c.model_dump()})
            return out

    lines = asyncio.run(ask())
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_analyze_plots_both_contexts(root: Path, critic: ServerProcess, tmp_path: Path) -> None:
    rollouts = tmp_path / "rollouts.jsonl"
    _rollouts(critic.url, rollouts)
    out_dir = tmp_path / "an"
    _cli("analyze", "--model", str(root / "tiny"), "--rollouts", str(rollouts), "--count", "3", "--out", str(out_dir))
    report = json.loads((out_dir / "analysis.json").read_text())
    assert len(report["rollouts"]) == 3
    page = (out_dir / "advantages.html").read_text()
    for i, r in enumerate(report["rollouts"]):
        assert r["pivotal_step"] == 3 and r["case"] == "D"
        for ctx in ("stepalign", "refsol"):
            loc = r["localisation"][ctx]
            assert loc["tokens"] > 20 and loc["mean_pivot"] is not None and loc["mean_prefix"] is not None
        image = Image.open(out_dir / r["png"])
        assert image.size == (1100, 400)
        meta = json.loads(image.text["Description"])
        assert meta["marked_step"] == "Step 3 (first error)"
        assert meta["xlabel"] == "token position in the student's solution" and meta["ylabel"].startswith("A_t")
        assert int(meta["tokens"]) == r["localisation"]["stepalign"]["tokens"]
        assert len(set(image.convert("L").getdata())) > 10  # not a blank canvas
        assert page.count("Step 3 (first error)") >= 3
        del i
    tokens = sum(r["localisation"]["stepalign"]["tokens"] for r in report["rollouts"])
    assert page.count("<span class='tok") == 2 * tokens  # every token, under both contexts
    assert set(report["aggregate"]) == {"stepalign", "refsol"}


def test_analyze_a_run_reads_every_rank_and_its_budget(root: Path, critic: ServerProcess, tmp_path: Path) -> None:
    # A two-process run leaves critiques.jsonl and critiques.rank1.jsonl; its config says the teacher's budget.
    from trainer.data import Problem, write_problems

    chain = random_chain(__import__("random").Random(3), length=(4, 4))
    steps = chain.solution_steps()
    slip = steps.copy()
    a, rest = slip[1].rsplit("=", 1)
    slip[1] = f"{a}= {int(rest) + 1}"  # a slip at step 2 that step 3 does not inherit: case B
    problem = Problem(id="p1", problem=chain.problem_text(), answer=format_number(chain.answer), solution="ref")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_problems([problem], run_dir / "train.jsonl")
    config = {"max_context_tokens": 96, "teacher_thinking": True, "data": {"train": str(run_dir / "train.jsonl")}}
    (run_dir / "config.resolved.json").write_text(json.dumps(config))

    async def critique(text: str) -> dict[str, object]:
        async with CriticClient(critic.url) as client:
            req = CritiqueRequest(problem=problem.problem, reference_answer=problem.answer, student_solution=text,
                                  request_id="p1:abc")  # fmt: skip
            return (await client.critique(req)).model_dump(mode="json")

    tagged = lambda xs: "\n".join(f"<step_{i}>{x}</step_{i}>" for i, x in enumerate(xs, 1))  # noqa: E731
    wrong = asyncio.run(
        critique(tagged([*steps[:2], steps[2].replace("=", "= 1 +", 1)]) + "\n<answer>\\boxed{1}</answer>")
    )
    b = asyncio.run(critique(tagged(slip) + f"\n<answer>\\boxed{{{problem.answer}}}</answer>"))
    (run_dir / "critiques.jsonl").write_text(
        json.dumps({"key": "0:0:x", "step": 0, "index": 0, "critique": wrong}) + "\n"
    )
    (run_dir / "critiques.rank1.jsonl").write_text(
        json.dumps({"key": "0:0:y", "step": 0, "index": 0, "critique": b}) + "\n"
    )
    out_dir = tmp_path / "an"
    _cli("analyze", "--model", str(root / "tiny"), "--run", str(run_dir), "--count", "5", "--out", str(out_dir))
    report = json.loads((out_dir / "analysis.json").read_text())
    assert report["budget"] == 96
    assert sorted(r["case"] for r in report["rollouts"]) == ["B", "D"]  # both ranks' rollouts
    labels = {r["case"]: r["plot"]["marked_step"] for r in report["rollouts"]}
    assert labels["B"] == "Step 2 (unjustified step)" and "(first error)" in labels["D"]
    assert "Step 2 (first error)" not in (out_dir / "advantages.html").read_text()
