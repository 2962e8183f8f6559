"""The pretraining corpus of the toy solver: what it reads and what it learns to write, in the project's real
prompts.

Four kinds of example, mixed by `MixSettings`:
- `student`: the student prompt exactly as the trainer renders it (`trainer.train.dataset_rows`: the STUDENT
  template in the chat template, thinking off) -> a solution with slips (`trainer.toy.slips`);
- `feedback`: the StepAlignFB teacher prompt (`trainer.contexts.teacher_context`, thinking on) holding the real
  critic's `feedback` on an attempt (mostly a wrong one) -> the correct solution: the attempt's steps before its
  first wrong step, then one operation per step (what the feedback shows);
- `reference`: the RefSol teacher prompt holding the reference solution (merged derivation) -> a correct solution
  that follows the reference's merges at each point with probability `follow_reference`, as an LLM shown a worked
  solution tends to;
- `wrong_prefix`: either teacher prompt -> a wrong attempt, with the loss only on the tokens after its first wrong
  character: after an error in its own output the teacher continues with arithmetic consistent with it, instead
  of predicting the correction's numbers (../shared/TOY-WORLD.md: without these, ~80% of the distillation KL fell
  after the pivotal step and the student collapsed).

The feedback comes from a real critic over HTTP (`trainer` never imports `critic_service`): the batch route, 64
items a request, a few requests in flight.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from shared.arithmetic import Chain, format_number
from shared.prompts import student_prompt
from shared.schemas import Critique, CritiqueRequest, FeedbackMode
from trainer.contexts import chat, teacher_context
from trainer.toy.slips import Attempt, SlipSettings, write_attempt
from trainer.toy.world import WorldSettings, reference_solution, render_solution, toy_chains

KINDS = ("student", "feedback", "reference", "wrong_prefix")
BATCH_ITEMS = 64  # the critic's batch route limit


@dataclass(frozen=True)
class MixSettings:
    """Shares of the example kinds, and how the teacher examples are drawn."""

    student: float = 0.5
    feedback: float = 0.2
    reference: float = 0.15
    wrong_prefix: float = 0.15
    feedback_on_wrong: float = 0.8  # share of feedback examples whose attempt is wrong (the rest: case A)
    follow_reference: float = 0.8  # P(the RefSol target merges where the reference merged), per merge point
    wrong_prefix_refsol: float = 0.5  # share of wrong-prefix examples under the RefSol prompt (the rest: feedback)

    def __post_init__(self) -> None:
        shares = self.weights()
        if min(shares) < 0 or sum(shares) <= 0:
            raise ValueError(f"mix shares {dict(zip(KINDS, shares, strict=True))}: non-negative, not all 0")
        for name in ("feedback_on_wrong", "follow_reference", "wrong_prefix_refsol"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ValueError(f"mix setting {name}={p}: expected a probability in [0, 1]")

    def without_wrong_prefix(self) -> MixSettings:
        """The ablation: the wrong-prefix examples' share goes to the feedback and reference examples (split as
        the wrong-prefix examples were split between the two teacher prompts), the student share unchanged."""
        w, r = self.wrong_prefix, self.wrong_prefix_refsol
        return replace(self, wrong_prefix=0.0, feedback=self.feedback + w * (1 - r), reference=self.reference + w * r)

    def weights(self) -> list[float]:
        return [self.student, self.feedback, self.reference, self.wrong_prefix]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Example:
    """A prompt (already in the chat template) and the text to learn after it; the loss covers the target's
    tokens that start at or after character `loss_from`, and the end-of-turn token."""

    kind: str
    prompt: str
    target: str
    loss_from: int = 0


@dataclass
class Draft:
    """An example before its prompt is rendered: the critic's feedback is filled in later, in batches."""

    kind: str
    chain: Chain
    context: str  # "student", "stepalign" or "refsol"
    target: str
    loss_from: int = 0
    attempt: str = ""  # the solution the critic judges (stepalign contexts)
    feedback: str = ""


def corrected(chain: Chain, attempt: Attempt) -> str:
    """The correct solution the feedback on `attempt` shows: its steps before the first wrong one, then one
    operation per step from there (the whole attempt if it is right)."""
    if attempt.first_wrong is None:
        return attempt.text
    k = attempt.first_wrong
    start_op = attempt.groups[k - 1][0]
    steps = [*attempt.steps[: k - 1], *chain.solution_steps()[start_op:]]
    return render_solution(steps, chain.answer)


def following_reference(chain: Chain, rng: random.Random, follow: float) -> str:
    """A correct solution that merges where the reference merges, each merge point with probability `follow`."""
    groups: list[tuple[int, int]] = []
    for i, j in chain.merged_groups():
        groups.append((i, i + 1))
        for op in range(i + 1, j):
            if rng.random() < follow:
                groups[-1] = (groups[-1][0], op + 1)
            else:
                groups.append((op, op + 1))
    clean = SlipSettings(carry=0.0, borrow=0.0, small=0.0, merge=0.0)
    return write_attempt(chain, rng, clean, groups=groups).text


def draft_examples(
    count: int, *, seed: int, world: WorldSettings, slips: SlipSettings, mix: MixSettings
) -> list[Draft]:
    """`count` drafts of the mix, on training problems drawn with `seed`."""
    rng = random.Random(f"corpus-{seed}")
    chains = toy_chains(count, seed=seed, split="train", world=world)
    kinds = rng.choices(KINDS, weights=mix.weights(), k=count)
    drafts = []
    for chain, kind in zip(chains, kinds, strict=True):
        if kind == "student":
            drafts.append(Draft(kind, chain, "student", write_attempt(chain, rng, slips).text))
        elif kind == "feedback":
            attempt = write_attempt(chain, rng, slips, force_wrong=rng.random() < mix.feedback_on_wrong)
            drafts.append(Draft(kind, chain, "stepalign", corrected(chain, attempt), attempt=attempt.text))
        elif kind == "reference":
            drafts.append(Draft(kind, chain, "refsol", following_reference(chain, rng, mix.follow_reference)))
        else:
            attempt = write_attempt(chain, rng, slips, force_wrong=True)
            assert attempt.wrong_char is not None
            context = "refsol" if rng.random() < mix.wrong_prefix_refsol else "stepalign"
            drafts.append(Draft(kind, chain, context, attempt.text, attempt.wrong_char + 1, attempt=attempt.text))
    return drafts


def critic_request(chain: Chain, solution: str) -> CritiqueRequest:
    """The critique request of a solution, as the trainer sends it: splice mode, the reference answer and the
    reference solution."""
    return CritiqueRequest(
        problem=chain.problem_text(),
        reference_answer=format_number(chain.answer),
        reference_solution=reference_solution(chain),
        student_solution=solution,
        feedback_mode=FeedbackMode.splice,
    )


def critique_requests(drafts: list[Draft]) -> list[tuple[int, CritiqueRequest]]:
    """The critic requests of the drafts that need feedback."""
    return [(i, critic_request(d.chain, d.attempt)) for i, d in enumerate(drafts) if d.context == "stepalign"]


async def _fetch(url: str, requests: list[CritiqueRequest], concurrency: int, strict: bool) -> list[Critique | None]:
    from shared.client import CriticClient

    sem = asyncio.Semaphore(concurrency)
    async with CriticClient(url, read_timeout_s=120.0) as client:

        async def chunk(items: list[CritiqueRequest]) -> list[Critique | None]:
            async with sem:
                response = await client.batch(items)
            if strict and (bad := next((r.error for r in response.results if r.critique is None), None)):
                raise RuntimeError(f"the critic could not judge a toy attempt: {bad}")
            return [r.critique for r in response.results]

        parts = await asyncio.gather(
            *(chunk(requests[i : i + BATCH_ITEMS]) for i in range(0, len(requests), BATCH_ITEMS))
        )
    return [c for part in parts for c in part]


def fetch_critiques(
    url: str, requests: list[CritiqueRequest], *, concurrency: int = 4, strict: bool = True
) -> list[Critique | None]:
    """The critic's critique of each request, in order, over HTTP (batch route, 64 items a request). An item
    the critic answers with an error raises `RuntimeError` (`strict`) or gives None."""
    if not requests:
        return []
    return asyncio.run(_fetch(url, requests, concurrency, strict))


def fetch_feedback(
    url: str, requests: list[CritiqueRequest], *, concurrency: int = 4, strict: bool = True
) -> list[str | None]:
    """The critic's `feedback` string for each request (None for an error, when not `strict`)."""
    got = fetch_critiques(url, requests, concurrency=concurrency, strict=strict)
    return [c.feedback if c is not None else None for c in got]


def add_feedback(drafts: list[Draft], critic_url: str) -> None:
    """Fill in every stepalign draft's feedback from the critic."""
    todo = critique_requests(drafts)
    for (i, _), feedback in zip(todo, fetch_feedback(critic_url, [r for _, r in todo]), strict=True):
        drafts[i].feedback = feedback or ""


def student_text(tokenizer: Any, problem: str) -> str:
    """The student prompt exactly as the trainer renders it (`trainer.train.dataset_rows`, thinking off)."""
    return chat(tokenizer, student_prompt(problem), thinking=False)


def teacher_text(
    tokenizer: Any, context: str, problem: str, *, feedback: str = "", reference: str = "", budget: int
) -> str:
    """A teacher prompt exactly as the trainer's context builder renders it (thinking on)."""
    return teacher_context(
        context,
        problem=problem,
        tokenizer=tokenizer,
        budget=budget,
        thinking=True,
        feedback=feedback,
        reference_solution=reference,
    ).text


def render(drafts: list[Draft], tokenizer: Any, *, budget: int) -> list[Example]:
    """The drafts as examples, their prompts rendered through the project's prompt and context functions."""
    out = []
    for d in drafts:
        problem = d.chain.problem_text()
        if d.context == "student":
            prompt = student_text(tokenizer, problem)
        else:
            prompt = teacher_text(
                tokenizer, d.context, problem, feedback=d.feedback, reference=reference_solution(d.chain), budget=budget
            )
        out.append(Example(d.kind, prompt, d.target, d.loss_from))
    return out


def tokenizer_texts(drafts: list[Draft]) -> list[str]:
    """Raw texts to train the tokenizer on: the prompts' words (chat markers aside) and the solutions."""
    from shared.prompts import teacher_prompt

    texts = ["user\n", "assistant\n"] * 50
    for d in drafts:
        problem = d.chain.problem_text()
        if d.context == "student":
            texts.append(student_prompt(problem))
        elif d.context == "stepalign":
            texts.append(teacher_prompt("stepalign", problem=problem, feedback=d.feedback))
        else:
            texts.append(teacher_prompt("refsol", problem=problem, reference_solution=reference_solution(d.chain)))
        texts.append(d.target)
    return texts


def build_examples(
    count: int,
    *,
    seed: int,
    world: WorldSettings,
    slips: SlipSettings,
    mix: MixSettings,
    critic_url: str,
    tokenizer: Any | None,
    budget: int,
    make_tokenizer: Callable[[list[str]], Any] | None = None,
) -> tuple[list[Example], Any]:
    """`count` examples and the tokenizer they were rendered with: `tokenizer`, or (when it is None) the one
    `make_tokenizer` trains on these examples' raw texts (the first chunk of a corpus trains it)."""
    drafts = draft_examples(count, seed=seed, world=world, slips=slips, mix=mix)
    add_feedback(drafts, critic_url)
    if tokenizer is None:
        if make_tokenizer is None:
            raise ValueError("build_examples needs a tokenizer or a make_tokenizer function")
        tokenizer = make_tokenizer(tokenizer_texts(drafts))
    return render(drafts, tokenizer, budget=budget), tokenizer
