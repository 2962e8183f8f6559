"""`stepalign-train toy gap`: the context gap of a solver on held-out problems, from its own greedy generations.

Self-distillation can only teach what the teacher context adds: the same model must solve far more problems when
its prompt holds the critic's feedback (or the reference) than with the plain student prompt. Measured here:
(i) the student prompt; (ii) the StepAlignFB teacher prompt holding the real critic's feedback on the student's
OWN wrong greedy attempt, over the problems the student got wrong (and, as `feedback_all`, over all problems:
the teacher's answer where the student was wrong, the student's own where it was right); (iii) the RefSol teacher
prompt holding the reference solution, over all problems. Accuracy with feedback alone is a weak measure early in
pretraining (the boxed answer is in the feedback), so the share of exact copies of the correct solution is
reported too, and for RefSol how many outputs follow the reference's merged derivation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from shared.answers import last_boxed
from shared.arithmetic import Chain, parse_number, parse_step
from shared.steps import SegmentationError, segment
from trainer.toy.corpus import critic_request, fetch_feedback, student_text, teacher_text
from trainer.toy.world import WorldSettings, reference_solution, toy_chains


def generate(
    model: Any,
    tok: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[str]:
    """Completions (greedy at temperature 0), decoded as TRL decodes them (special tokens dropped); batched by
    prompt length, left-padded."""
    import torch

    side = tok.padding_side
    tok.padding_side = "left"
    torch.manual_seed(seed)
    texts: dict[int, str] = {}
    try:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {}
            with torch.inference_mode():
                gen = model.generate(
                    **enc,
                    **({"do_sample": False} | sampling),
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tok.pad_token_id,
                )
            decoded = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            texts.update(zip(idx, decoded, strict=True))
    finally:
        tok.padding_side = side
    return [texts[i] for i in range(len(prompts))]


def answer_of(text: str) -> Fraction | None:
    boxed = last_boxed(text)
    if boxed is None:
        return None
    try:
        return parse_number(boxed.strip())
    except (ValueError, ZeroDivisionError):
        return None


def merged_steps(text: str) -> int:
    """How many steps of a solution apply more than one operation."""
    try:
        steps = segment(text).steps
    except SegmentationError:
        return 0
    return sum(1 for s in steps if (eq := parse_step(s.text)) is not None and len(eq.ops) > 1)


def solution_part(feedback: str) -> str:
    """The faithful-scribe solution inside the critic's feedback (after its `Solution:` line)."""
    _, sep, tail = feedback.partition("Solution:\n")
    return tail if sep else ""


@contextlib.contextmanager
def critic_at(url: str | None, log: Path) -> Iterator[str]:
    """`url`, or a checker critic started on 127.0.0.1 for the duration (its log at `log`)."""
    if url:
        yield url
        return
    from shared.local_critic import local_critic

    with local_critic(log, "--engine", "checker", "--no-cache") as critic:
        yield critic.url


def measure_gap(
    model_dir: Path,
    *,
    problems: int = 200,
    seed: int = 0,
    world: WorldSettings | None = None,
    critic_url: str | None = None,
    budget: int = 512,
    max_new_tokens: int = 160,
    batch_size: int = 64,
    examples: int = 2,
    model: Any = None,
    tokenizer: Any = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The context gap of the solver in `model_dir` (or of `model`/`tokenizer` in memory) on `problems` held-out
    problems, as a JSON-able dict of counts and shares."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.monotonic()
    tok = tokenizer or AutoTokenizer.from_pretrained(model_dir)
    lm = model or AutoModelForCausalLM.from_pretrained(model_dir)
    was_training = bool(getattr(lm, "training", False))
    lm.eval()
    chains = toy_chains(problems, seed=seed, split="test", world=world)
    n = len(chains)

    def run(prompts: list[str], what: str) -> list[str]:
        if log is not None:
            log(f"context gap: {len(prompts)} greedy solutions with {what}")
        return generate(lm, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)

    student = run([student_text(tok, c.problem_text()) for c in chains], "the student prompt")
    right = [answer_of(s) == c.answer for s, c in zip(student, chains, strict=True)]
    wrong = [i for i in range(n) if not right[i]]

    with critic_at(critic_url, Path(model_dir) / "gap-critic.log") as url:
        feedback, critic_errors = _feedback(url, [chains[i] for i in wrong], [student[i] for i in wrong])
    judged = [(i, f) for i, f in zip(wrong, feedback, strict=True) if f is not None]
    fb_out = run(
        [teacher_text(tok, "stepalign", chains[i].problem_text(), feedback=f, budget=budget) for i, f in judged],
        "the critic's feedback on the wrong ones",
    )
    fb_right = [answer_of(o) == chains[i].answer for (i, _), o in zip(judged, fb_out, strict=True)]
    fb_copies = [o.strip() == solution_part(f).strip() for (_, f), o in zip(judged, fb_out, strict=True)]

    references = [reference_solution(c) for c in chains]
    ref_out = run(
        [
            teacher_text(tok, "refsol", c.problem_text(), reference=r, budget=budget)
            for c, r in zip(chains, references, strict=True)
        ],
        "the reference solution",
    )
    ref_right = [answer_of(o) == c.answer for o, c in zip(ref_out, chains, strict=True)]
    mergeable = [i for i, c in enumerate(chains) if len(c.merged_groups()) < len(c.ops)]

    k_student, k_fb = sum(right), sum(fb_right)
    m = len(judged)
    result: dict[str, Any] = {
        "model": str(model_dir),
        "problems": n,
        "seed": seed,
        "student": {"correct": k_student, "wrong": len(wrong), "accuracy": k_student / n},
        "feedback": {
            "over": "the student's wrong greedy attempts that the critic judged",
            "attempts": m,
            "critic_errors": critic_errors,
            "correct": k_fb,
            "accuracy": k_fb / m if m else None,
            "exact_copies": sum(fb_copies),
            "exact_copy_share": sum(fb_copies) / m if m else None,
        },
        "feedback_all": {
            "over": "all problems: the teacher's answer (with feedback) where the student was wrong, the student's "
            "own where it was right; an attempt the critic could not judge counts as wrong",
            "correct": k_student + k_fb,
            "accuracy": (k_student + k_fb) / n,
        },
        "refsol": {
            "over": "all problems",
            "correct": sum(ref_right),
            "accuracy": sum(ref_right) / n,
            "exact_copies_of_reference": sum(o.strip() == r for o, r in zip(ref_out, references, strict=True)),
            "problems_where_derivations_differ": len(mergeable),
            "outputs_with_merged_steps": sum(merged_steps(ref_out[i]) > 0 for i in mergeable),
        },
        "gap_points": 100 * ((k_fb / m if m else 0.0) - k_student / n),
        "seconds": round(time.monotonic() - t0, 1),
        "examples": [
            {"problem": chains[i].problem_text(), "student": student[i], "feedback": f, "teacher": o}
            for (i, f), o in list(zip(judged, fb_out, strict=True))[:examples]
        ],
    }
    if was_training:
        lm.train()
    return result


def _feedback(url: str, chains: list[Chain], attempts: list[str]) -> tuple[list[str | None], int]:
    """The critic's feedback per attempt (None where the attempt is empty or the critic returned an error, e.g.
    no steps found), and how many got none."""
    out: list[str | None] = [None] * len(chains)
    sendable = [(i, critic_request(c, a)) for i, (c, a) in enumerate(zip(chains, attempts, strict=True)) if a.strip()]
    got = fetch_feedback(url, [r for _, r in sendable], strict=False)
    for (i, _), f in zip(sendable, got, strict=True):
        out[i] = f
    return out, sum(f is None for f in out)
