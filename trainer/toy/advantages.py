"""`stepalign-train toy advantages`: where the per-token advantage A_t = log p_T - log p_S lands on the solver's
own sampled rollouts, under the StepAlignFB and the RefSol teacher contexts (computed by `trainer.analysis`).

Wrong rollouts (case D) are split into the correct prefix, the pivotal step's left side (up to its `=`), the
pivotal step's result, its first wrong token, and everything after the pivotal step (also: only the result digits
there, which are right given the student's own wrong running value). ../shared/TOY-WORLD.md measured, for a teacher
never shown wrong prefixes: prefix ~0, pivot result ~-5, after the pivot ~-7. Correct rollouts (case A) show the
RefSol effect: how often the reference-conditioned teacher rejects a token of a correct solution (p_T(y_t) < 0.5),
and how many of those rejections are at a point where the reference merges two operations (the teacher prefers the
reference's derivation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from shared.arithmetic import Chain, parse_step
from shared.schemas import Case, Critique
from trainer.toy.corpus import critic_request, fetch_critiques, student_text
from trainer.toy.gap import critic_at, generate
from trainer.toy.world import WorldSettings, reference_solution, toy_chains

PARTS = ("prefix", "pivot_left", "pivot_result", "first_wrong_token", "after", "after_results")
REJECT = -0.6931471805599453  # log 0.5: the teacher gives the student's token less than even odds


@dataclass(frozen=True)
class Scored:
    """One rollout with its critique and, per context, A_t and log p_T per token."""

    chain: Chain
    critique: Critique
    offsets: list[tuple[int, int]]
    steps: list[int | None]
    adv: dict[str, list[float]]
    teacher_logp: dict[str, list[float]]


def _labels(s: Scored) -> list[str | None]:
    """The part of a wrong rollout each token belongs to (None for tokens of no part, e.g. the pivot's tag)."""
    pivot = s.critique.pivotal_step
    assert pivot is not None
    text = s.critique.steps.text
    step = s.critique.steps.steps[pivot - 1]
    eq = text.rfind("=", step.start, step.end)
    out: list[str | None] = []
    reached = False
    for (start, _), k in zip(s.offsets, s.steps, strict=True):
        if k is not None and k > pivot:
            reached = True
        if k == pivot:
            out.append("pivot_left" if eq < 0 or start <= eq else "pivot_result")
        elif reached or (k is None and start >= step.end):
            out.append("after")
        elif k is not None and k < pivot:
            out.append("prefix")
        else:
            out.append(None)
    return out


def _first_wrong_token(s: Scored) -> int | None:
    """The token holding the first character where the pivotal step differs from the critic's corrected step."""
    pivot = s.critique.pivotal_step
    if pivot is None or not s.critique.correction:
        return None
    step = s.critique.steps.steps[pivot - 1]
    head = f"<step_{pivot}>"
    body = s.critique.correction
    fixed = body[body.find(head) + len(head) : body.find(f"</step_{pivot}>")] if head in body else ""
    diff = next((i for i, (a, b) in enumerate(zip(step.text, fixed, strict=False)) if a != b), None)
    if diff is None:
        diff = min(len(step.text), len(fixed))
    pos = step.start + diff
    return next((t for t, (a, b) in enumerate(s.offsets) if a <= pos < max(b, a + 1)), None)


def _result_tokens(s: Scored) -> set[int]:
    """Tokens of the results (right of `=`) of the steps after the pivotal one."""
    pivot = s.critique.pivotal_step or 0
    text = s.critique.steps.text
    out: set[int] = set()
    for st in s.critique.steps.steps[pivot:]:
        eq = text.rfind("=", st.start, st.end)
        out |= {t for t, (a, _) in enumerate(s.offsets) if eq >= 0 and eq < a < st.end}
    return out


def wrong_parts(s: Scored, context: str) -> dict[str, list[float]]:
    values = s.adv[context]
    parts: dict[str, list[float]] = {p: [] for p in PARTS}
    for t, label in enumerate(_labels(s)):
        if label is not None:
            parts[label].append(values[t])
    first = _first_wrong_token(s)
    if first is not None:
        parts["first_wrong_token"].append(values[first])
    parts["after_results"] = [values[t] for t in sorted(_result_tokens(s))]
    return parts


def merge_point_tokens(s: Scored) -> set[int]:
    """Tokens of a correct one-operation-per-step rollout where the reference's derivation goes another way: the
    `=` (and what follows) of a step whose operation the reference merges with the next one."""
    text = s.critique.steps.text
    ops = s.chain.ops
    groups = s.chain.merged_groups()
    ends = {j for _, j in groups}
    out: set[int] = set()
    done = 0
    for st in s.critique.steps.steps:
        eq = parse_step(st.text)
        if eq is None:
            break
        done += len(eq.ops)
        if done < len(ops) and done not in ends:  # the reference keeps going within this step
            cut = text.rfind("=", st.start, st.end)
            out |= {t for t, (a, _) in enumerate(s.offsets) if cut >= 0 and cut - 1 <= a < st.end}
    return out


def score(model: Any, tok: Any, chain: Chain, critique: Critique, *, budget: int) -> Scored:
    """A_t under both contexts via `trainer.analysis.advantages`, and the teacher's log-probabilities."""
    from trainer.analysis import Rollout, advantages, completion_logprobs

    seg = critique.steps
    rollout = Rollout(
        id="toy",
        problem=chain.problem_text(),
        completion=seg.text,
        feedback=critique.feedback,
        reference_solution=reference_solution(chain),
        pivotal_step=critique.pivotal_step,
        case=critique.case.value,
        spans=[(st.start, st.end) for st in seg.steps],
    )
    adv = advantages(model, tok, rollout, budget=budget, teacher_thinking=True)
    enc = tok(seg.text, add_special_tokens=False, return_offsets_mapping=True)
    student = completion_logprobs(model, tok, student_text(tok, rollout.problem), enc["input_ids"])
    contexts = ("stepalign", "refsol")
    teacher = {c: [a + s for a, s in zip(adv[c], student, strict=True)] for c in contexts}
    return Scored(chain, critique, list(enc["offset_mapping"]), adv["steps"], {c: adv[c] for c in contexts}, teacher)


def _avg(xs: list[float]) -> float | None:
    return round(mean(xs), 3) if xs else None


def measure_advantages(
    model_dir: Path,
    *,
    wrong: int = 50,
    correct: int = 50,
    seed: int = 0,
    temperature: float = 1.0,
    world: WorldSettings | None = None,
    critic_url: str | None = None,
    budget: int = 512,
    max_new_tokens: int = 160,
) -> dict[str, Any]:
    """Sample the solver on held-out problems until `wrong` case-D and `correct` case-A rollouts are found, and
    summarise where A_t lands under each context. A JSON-able dict."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    found: dict[str, list[tuple[Chain, Critique]]] = {"D": [], "A": []}
    sampled = 0
    with critic_at(critic_url, Path(model_dir) / "advantages-critic.log") as url:
        for round_ in range(20):
            chains = toy_chains(4 * (wrong + correct), seed=seed * 1000 + round_, split="test", world=world)
            prompts = [student_text(tok, c.problem_text()) for c in chains]
            texts = generate(
                model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=64, temperature=temperature, seed=seed
            )
            sampled += len(texts)
            keep = [(c, t) for c, t in zip(chains, texts, strict=True) if t.strip()]
            got = fetch_critiques(url, [critic_request(c, t) for c, t in keep], strict=False)
            for (c, _), crit in zip(keep, got, strict=True):
                if crit is None:
                    continue
                ok_d = crit.case is Case.D and (crit.pivotal_step or 0) <= len(crit.steps.steps)
                if ok_d and len(found["D"]) < wrong:
                    found["D"].append((c, crit))
                elif crit.case is Case.A and len(found["A"]) < correct:
                    found["A"].append((c, crit))
            if len(found["D"]) >= wrong and len(found["A"]) >= correct:
                break
    scored_wrong = [score(model, tok, c, k, budget=budget) for c, k in found["D"]]
    scored_right = [score(model, tok, c, k, budget=budget) for c, k in found["A"]]
    result: dict[str, Any] = {
        "model": str(model_dir),
        "temperature": temperature,
        "sampled": sampled,
        "wrong_rollouts": len(scored_wrong),
        "correct_rollouts": len(scored_right),
    }
    for context in ("stepalign", "refsol"):
        pooled: dict[str, list[float]] = {p: [] for p in PARTS}
        neg_after, neg_total = 0.0, 0.0
        for s in scored_wrong:
            parts = wrong_parts(s, context)
            for p in PARTS:
                pooled[p].extend(parts[p])
            neg_after += sum(-min(a, 0.0) for a in parts["after"])
            neg_total += sum(-min(a, 0.0) for a in s.adv[context])
        wrong_summary: dict[str, Any] = {f"mean_{p}": _avg(pooled[p]) for p in PARTS}
        wrong_summary["negative_mass_after_pivot_share"] = round(neg_after / neg_total, 3) if neg_total else None
        rejected_any, rejected_at_merge, rejected_total, merge_rollouts, merge_rejected = 0, 0, 0, 0, 0
        all_adv: list[float] = []
        at_merge: list[float] = []
        for s in scored_right:
            rejected = {t for t, lp in enumerate(s.teacher_logp[context]) if lp < REJECT}
            merge = merge_point_tokens(s)
            merge_rollouts += bool(merge)
            merge_rejected += bool(rejected & merge)
            rejected_any += bool(rejected)
            rejected_total += len(rejected)
            rejected_at_merge += len(rejected & merge)
            all_adv.extend(s.adv[context])
            at_merge.extend(s.adv[context][t] for t in merge)
        result[context] = {
            "wrong": wrong_summary,
            "correct": {
                "mean": _avg(all_adv),
                "mean_at_merge_points": _avg(at_merge),
                "rollouts_with_a_rejected_token": rejected_any,
                "rejected_tokens": rejected_total,
                "rejected_tokens_at_merge_points": rejected_at_merge,
                "rollouts_with_a_merge_point": merge_rollouts,
                "of_those_rejected_at_a_merge_point": merge_rejected,
            },
        }
    return result
