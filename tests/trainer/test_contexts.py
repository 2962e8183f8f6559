"""Teacher contexts as the paper builds them: a truncated rollout's case-C feedback fits the budget with the
critic's correction whole; RefSol sees the complete reference solution with its boxed answer; a stepalign rollout
without a critique on its own context is an error, not a silent mask."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared.arithmetic import Chain, format_number
from shared.client import CriticClient
from shared.schemas import Case, Critique, CritiqueRequest, FeedbackMode
from shared.steps import segment
from tests.servers import ServerProcess
from tests.trainer.runs import workspace
from trainer.contexts import teacher_context
from trainer.data import complete_solution, load_problems
from trainer.sdpo import CRITIQUE, BuilderSettings, MissingCritique, TeacherContextBuilder


@pytest.fixture(scope="module")
def tok(root: Path) -> Any:
    from transformers import AutoTokenizer

    model, _ = workspace(root)
    return AutoTokenizer.from_pretrained(model)


def _count(tok: Any, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def _long_truncated_rollout(tok: Any) -> tuple[Chain, str]:
    """A chain of 72 additions and subtractions whose solution, cut at 2,048 tokens, stops in the middle of a
    step a few operations before the end (as a rollout cut at max_completion_length does)."""
    import random
    from fractions import Fraction

    rng = random.Random(3)
    ops = tuple((s, Fraction(rng.randint(1, 9))) for s in "+-" * 36)
    chain = Chain(start=Fraction(500), ops=ops)
    steps = chain.solution_steps()
    text = "\n".join(f"<step_{i}>{s}</step_{i}>" for i, s in enumerate(steps, 1))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 2100
    return chain, tok.decode(ids[:2048])


def _critique(url: str, req: CritiqueRequest) -> Critique:
    async def go() -> Critique:
        async with CriticClient(url) as client:
            return await client.critique(req)

    return asyncio.run(go())


@pytest.mark.parametrize("mode", list(FeedbackMode))
def test_truncated_rollout_feedback_fits_with_the_correction_whole(
    mode: FeedbackMode, tok: Any, critic: ServerProcess
) -> None:
    chain, rollout = _long_truncated_rollout(tok)
    assert _count(tok, rollout) == 2048
    req = CritiqueRequest(problem=chain.problem_text(), reference_answer=format_number(chain.answer),
                          student_solution=rollout, feedback_mode=mode)  # fmt: skip
    critique = _critique(critic.url, req)
    assert critique.case is Case.C
    budget = 1536
    assert _count(tok, critique.feedback) > budget  # copied whole, it would not fit
    ctx = teacher_context("stepalign", problem=req.problem, tokenizer=tok, budget=budget, thinking=True,
                          feedback=critique.feedback, student_steps=[s.text for s in critique.steps.steps])  # fmt: skip
    assert ctx.context_tokens <= budget and not ctx.truncated and ctx.elided_steps > 0
    n = critique.pivotal_step
    assert n is not None
    solution = critique.feedback.split("\n\nSolution:\n", 1)[1]
    corrected = "\n".join(solution[solution.rfind("<step", 0, s.start) :] for s in segment(solution).steps[n - 1 : n])
    critic_part = solution[solution.index(corrected) :]  # from the pivotal step to the answer: the critic's words
    assert critic_part in ctx.text and critic_part.endswith(f"\\boxed{{{format_number(chain.answer)}}}</answer>")
    assert f"[Steps 1-{ctx.elided_steps}: the student's own steps, all correct, left out for length]" in ctx.text


def _omr_row(problem: str, answer: str, thinking: bool) -> dict[str, Any]:
    trace = "Okay, let me think about this carefully. " * 300  # a long reasoning trace, as R1/QwQ write them
    clean = (
        "We add the numbers step by step.\n\nFirst, 19 + 23 = 42.\n\n"
        + "Each intermediate value is checked again. " * 120
        + f"\n\nTherefore the answer is \\boxed{{{answer}}}."
    )
    solution = f"<think>\n{trace}\n</think>\n\n{clean}" if thinking else clean
    return {"problem": problem, "expected_answer": answer, "generated_solution": solution, "problem_type": "has_answer"}


@pytest.mark.parametrize("thinking", [True, False])
def test_refsol_sees_the_complete_solution_and_its_answer(thinking: bool, tok: Any, tmp_path: Path) -> None:
    path = tmp_path / "omr.jsonl"
    path.write_text(json.dumps(_omr_row("What is 19 + 23?", "42", thinking)) + "\n")
    [p] = load_problems(str(path))
    assert "<think>" not in p.solution and "Okay, let me think" not in p.solution
    assert p.solution.startswith("We add the numbers") and p.solution.endswith("\\boxed{42}.")
    budget = 1024
    assert _count(tok, p.solution) > budget
    ctx = teacher_context("refsol", problem=p.problem, tokenizer=tok, budget=budget, thinking=True,
                          reference_solution=p.solution)  # fmt: skip
    assert ctx.context_tokens <= budget and ctx.middle_cut
    assert "Therefore the answer is \\boxed{42}." in ctx.text and "First, 19 + 23 = 42." in ctx.text


def test_complete_solution_of_generated_solutions() -> None:
    assert complete_solution("<think>\nhmm\n</think>\n\nSo \\boxed{3}.") == "So \\boxed{3}."
    assert complete_solution("hmm, long thought</think>\nSo \\boxed{3}.") == "So \\boxed{3}."
    assert complete_solution("Plain solution \\boxed{3}.") == "Plain solution \\boxed{3}."
    assert complete_solution("<think>only thinking, then \\boxed{3}</think>") == "only thinking, then \\boxed{3}"


def test_a_rollout_without_its_critique_is_an_error(tok: Any) -> None:
    import torch

    trainer = SimpleNamespace(
        processing_class=tok, accelerator=SimpleNamespace(device="cpu"), args=SimpleNamespace(max_reprompt_len=4096)
    )
    settings = BuilderSettings("stepalign", context_budget=512, teacher_thinking=True, max_failure_rate=0.5,
                               min_rollouts=100)  # fmt: skip
    builder = TeacherContextBuilder(trainer, settings)
    ids = tok(["<step_1>1 + 1 = 2</step_1>", "<step_1>2 + 2 = 4</step_1>"], add_special_tokens=False)["input_ids"]
    output = {"completion_ids": torch.tensor(ids), "completion_mask": torch.ones(2, len(ids[0]))}
    contexts: list[dict[str, Any]] = [{"problem": "p", "answer": "2"}, {"problem": "q", "answer": "4"}]
    with pytest.raises(MissingCritique, match="rollout 0 of this step reached the teacher-context builder"):
        builder.build(output, ["a", "b"], torch.zeros(2), feedbacks=contexts)
    contexts[0][CRITIQUE] = contexts[1][CRITIQUE] = None
    contexts[0]["completion"], contexts[1]["completion"] = "<step_1>1 + 1 = 2</step_1>", "something else"
    with pytest.raises(MissingCritique, match="rollout 1: the critique on its context is of another completion"):
        builder.build(output, ["a", "b"], torch.zeros(2), feedbacks=contexts)
