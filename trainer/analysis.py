"""`stepalign-train analyze`: where the learning signal lands. For chosen rollouts it computes the per-token
advantage A_t = log p(y_t | x, context, y_<t) - log p(y_t | x, y_<t) under each teacher context (the critic's
feedback, the reference solution), maps tokens to the student's steps, and reports localisation statistics,
a PNG per rollout in the style of the paper's figure and an HTML page with the tokens coloured by A_t.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.prompts import student_prompt
from trainer.contexts import chat, teacher_context
from trainer.metrics import Localisation, aggregate, localisation, token_steps

CONTEXTS = ("stepalign", "refsol")
LABELS = {"stepalign": "StepAlignFB (critic feedback)", "refsol": "RefSol (reference solution)"}
COLOURS = {"stepalign": "#1f77b4", "refsol": "#ff7f0e"}


@dataclass(frozen=True)
class Rollout:
    id: str
    problem: str
    completion: str
    feedback: str
    reference_solution: str
    pivotal_step: int | None
    case: str
    spans: list[tuple[int, int]]  # the critique's step spans into `completion`


def load_rollouts(lines: list[dict[str, Any]], problems: dict[str, Any], limit: int) -> list[Rollout]:
    """Rollouts from critique-log entries; problem text and reference come inline or from `problems` by id.
    Rollouts with a pivotal step come first (they are the interesting ones)."""
    out = []
    for n, e in enumerate(lines):
        c = e.get("critique")
        if not c:
            continue
        pid = str(e.get("problem_id") or (c.get("request_id") or "").split(":")[0])
        p = problems.get(pid, {})
        seg = c["steps"]
        out.append(
            Rollout(
                id=pid or str(e.get("key") or f"#{n}"),
                problem=e.get("problem") or p.get("problem", ""),
                completion=seg["text"],
                feedback=c["feedback"],
                reference_solution=e.get("reference_solution") or p.get("solution", ""),
                pivotal_step=c.get("pivotal_step"),
                case=c["case"],
                spans=[(s["start"], s["end"]) for s in seg["steps"]],
            )
        )
    out.sort(key=lambda r: r.pivotal_step is None)
    return out[:limit]


def completion_logprobs(model: Any, tok: Any, prompt: str, completion_ids: list[int]) -> list[float]:
    """log p(y_t | prompt, y_<t) for every completion token."""
    import torch

    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + completion_ids], device=model.device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    target = torch.tensor(completion_ids, device=model.device)
    return logp.gather(1, target[:, None])[:, 0].tolist()


def advantages(model: Any, tok: Any, r: Rollout, *, budget: int, teacher_thinking: bool) -> dict[str, Any]:
    enc = tok(r.completion, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    student = completion_logprobs(model, tok, chat(tok, student_prompt(r.problem), thinking=False), ids)
    result: dict[str, Any] = {
        "tokens": [r.completion[a:b] for a, b in enc["offset_mapping"]],
        "steps": token_steps(enc["offset_mapping"], r.spans),
    }
    for condition in CONTEXTS:
        ctx = teacher_context(
            condition,
            problem=r.problem,
            tokenizer=tok,
            budget=budget,
            thinking=teacher_thinking,
            feedback=r.feedback,
            reference_solution=r.reference_solution,
            student_steps=[r.completion[s:e] for s, e in r.spans],
        )
        teacher = completion_logprobs(model, tok, ctx.text, ids)
        result[condition] = [t - s for t, s in zip(teacher, student, strict=True)]
    return result


def pivot_label(r: Rollout) -> str:
    """What the pivotal step is, by case: only in case D is it the first error."""
    what = {"D": "first error", "B": "unjustified step", "C": "where the solution stops"}.get(r.case, "pivotal")
    return f"Step {r.pivotal_step} ({what})"


def plot(path: Path, r: Rollout, adv: dict[str, Any]) -> dict[str, Any]:
    """The paper-style figure: A_t against token position for each context, the first wrong step shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps: list[int | None] = adv["steps"]
    n = len(steps)
    fig, ax = plt.subplots(figsize=(11, 4), dpi=100)
    for condition in CONTEXTS:
        ax.plot(range(n), adv[condition], label=LABELS[condition], color=COLOURS[condition], linewidth=1.2)
    starts = [i for i, s in enumerate(steps) if s is not None and (i == 0 or steps[i - 1] != s)]
    for i in starts:
        ax.axvline(i, color="#bbbbbb", linewidth=0.6, linestyle=":")
    marked = None
    if r.pivotal_step is not None:
        pos = [i for i, s in enumerate(steps) if s == r.pivotal_step]
        if pos:
            marked = pivot_label(r)
            ax.axvspan(pos[0], pos[-1] + 1, color="#d62728", alpha=0.12)
            ax.axvline(pos[0], color="#d62728", linewidth=1.5)
            ax.text(pos[0], ax.get_ylim()[1], f" {marked}", color="#d62728", va="top", fontsize=9)
    ax.axhline(0, color="black", linewidth=0.6)
    xlabel, ylabel = "token position in the student's solution", "A_t = log p(teacher) - log p(student)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"Per-token advantage, rollout {r.id} (case {r.case})")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    meta = {"xlabel": xlabel, "ylabel": ylabel, "marked_step": marked or "", "tokens": str(n)}
    fig.savefig(path, metadata={"Title": "StepAlign per-token advantage", "Description": json.dumps(meta)})
    plt.close(fig)
    return meta


def _colour(a: float, scale: float) -> str:
    x = max(-1.0, min(1.0, a / scale)) if scale else 0.0
    if x < 0:
        return f"rgba(214,39,40,{-x:.2f})"
    return f"rgba(44,160,44,{x:.2f})"


def html_page(path: Path, rollouts: list[tuple[Rollout, dict[str, Any], dict[str, Localisation]]]) -> None:
    """Every analysed rollout's tokens, coloured by A_t under each context (red negative, green positive)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>StepAlign per-token advantages</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1100px}.sol{font-family:monospace;white-space:pre-wrap;"
        "line-height:1.7;border:1px solid #ddd;padding:.6em}.tok{border-radius:2px}.pivot{border-bottom:2px solid "
        "#d62728}h3{margin-bottom:.2em}.legend span{padding:0 .5em}</style></head><body>",
        "<h1>Per-token advantages A<sub>t</sub></h1><p class='legend'><span style='background:rgba(214,39,40,.8)'>"
        "negative</span><span style='background:rgba(44,160,44,.8)'>positive</span> &nbsp; underlined: the pivotal "
        "step (the first wrong one in case D)</p>",
    ]
    for r, adv, locs in rollouts:
        parts.append(f"<h2>Rollout {html.escape(r.id)}: case {r.case}")
        if r.pivotal_step is not None:
            parts.append(f", <span class='marker'>{html.escape(pivot_label(r))}</span>")
        parts.append("</h2>")
        for condition in CONTEXTS:
            values: list[float] = adv[condition]
            scale = max((abs(v) for v in values), default=1.0) or 1.0
            loc = locs[condition]
            stats = ", ".join(f"{k}={v:.3f}" for k, v in asdict(loc).items() if isinstance(v, float))
            parts.append(f"<h3>{LABELS[condition]}</h3><p>{html.escape(stats)}</p><div class='sol'>")
            for tok, a, s in zip(adv["tokens"], values, adv["steps"], strict=True):
                cls = "tok pivot" if s is not None and s == r.pivotal_step else "tok"
                parts.append(
                    f"<span class='{cls}' data-adv='{a:.4f}' title='A_t={a:.3f}' "
                    f"style='background:{_colour(a, scale)}'>{html.escape(tok)}</span>"
                )
            parts.append("</div>")
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")


def analyze(
    model_path: str,
    rollouts: list[Rollout],
    out: Path,
    *,
    budget: int = 1536,
    teacher_thinking: bool = True,
) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(model_path)
    model: Any = AutoModelForCausalLM.from_pretrained(model_path)
    model.eval()
    report: dict[str, Any] = {
        "model": model_path,
        "budget": budget,
        "teacher_thinking": teacher_thinking,
        "rollouts": [],
    }
    done = []
    per_context: dict[str, list[Localisation]] = {c: [] for c in CONTEXTS}
    for r in rollouts:
        adv = advantages(model, tok, r, budget=budget, teacher_thinking=teacher_thinking)
        locs = {c: localisation(adv[c], adv["steps"], r.pivotal_step) for c in CONTEXTS}
        for c in CONTEXTS:
            per_context[c].append(locs[c])
        png = out / f"rollout-{len(done)}.png"
        meta = plot(png, r, adv)
        done.append((r, adv, locs))
        entry = {"id": r.id, "case": r.case, "pivotal_step": r.pivotal_step, "png": png.name, "plot": meta}
        entry["localisation"] = {c: asdict(locs[c]) for c in CONTEXTS}
        report["rollouts"].append(entry)
    html_page(out / "advantages.html", done)
    report["aggregate"] = {c: aggregate(per_context[c]) for c in CONTEXTS}
    (out / "analysis.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
