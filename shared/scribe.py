"""Assemble the faithful-scribe feedback: the teacher context of StepAlignFB.

In `splice` mode the student's steps before the pivotal step are copied byte for byte from the student's text and
the critic's correction is spliced in after them, so fidelity is 100% by construction. In `scribe` mode the critic
wrote the whole solution; `fidelity` measures how much of the student's correct prefix it really copied, and
`repair_near_copies` puts the student's exact text back where the critic only paraphrased it slightly.
"""

from __future__ import annotations

import difflib
import re

from shared.critique_text import ParsedCritique, render_summary
from shared.schemas import Case, Segmentation
from shared.steps import SegmentationError, segment

_WS = re.compile(r"\s+")


def _tagged(index: int, text: str) -> str:
    return f"<step_{index}>{text}</step_{index}>"


def copied_prefix_len(critique: ParsedCritique, n_steps: int) -> int:
    """How many student steps the feedback reproduces verbatim: all for case A, N-1 otherwise."""
    if critique.case is Case.A or critique.pivotal_step is None:
        return n_steps
    return max(0, min(critique.pivotal_step - 1, n_steps))


def splice_solution(seg: Segmentation, critique: ParsedCritique) -> str:
    """Student steps 1..N-1 verbatim in step tags, then the critic's correction (or, for A, the whole solution)."""
    keep = copied_prefix_len(critique, len(seg.steps))
    parts = [_tagged(s.index, s.text) for s in seg.steps[:keep]]
    if critique.case is Case.A:
        if seg.answer is not None:
            parts.append(f"<answer>{seg.text[seg.answer.start : seg.answer.end]}</answer>")
    elif critique.body:
        parts.append(critique.body)
    return "\n".join(parts)


def render_feedback(critique: ParsedCritique, solution: str) -> str:
    """The canonical `feedback` string: the summary block, then the faithful-scribe solution."""
    return f"{render_summary(critique.summary)}\n\nSolution:\n{solution}"


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _scribe_steps(solution: str) -> list[str]:
    try:
        return [s.text for s in segment(solution).steps]
    except SegmentationError:
        return []


def fidelity(seg: Segmentation, critique: ParsedCritique, solution: str) -> float:
    """Share of the student's steps before N that the scribe solution reproduces exactly, whitespace aside."""
    keep = copied_prefix_len(critique, len(seg.steps))
    if keep == 0:
        return 1.0
    written = _scribe_steps(solution)
    same = sum(1 for i in range(keep) if i < len(written) and _norm(written[i]) == _norm(seg.steps[i].text))
    return same / keep


def repair_near_copies(seg: Segmentation, critique: ParsedCritique, solution: str, min_ratio: float = 0.9) -> str:
    """Replace scribe steps before N that are near-copies (similarity >= min_ratio) of the student's steps with
    the student's exact text; steps that differ more are left alone, so fidelity still reports them."""
    keep = copied_prefix_len(critique, len(seg.steps))
    try:
        scribe = segment(solution)
    except SegmentationError:
        return solution
    out = solution
    # Right to left, so earlier spans stay valid while later ones are rewritten.
    for step in reversed(scribe.steps[:keep]):
        original = seg.steps[step.index - 1].text
        if step.text == original:
            continue
        if difflib.SequenceMatcher(None, _norm(step.text), _norm(original)).ratio() >= min_ratio:
            out = out[: step.start] + original + out[step.end :]
    return out
