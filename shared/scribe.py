"""Assemble the faithful-scribe feedback: the teacher context of StepAlignFB.

What the feedback reproduces verbatim depends on the case (DESIGN.md, the paper's faithful-scribe convention):
- A: every student step and the student's answer.
- D: the student's steps before the pivotal step N; the critic's correction takes over at step N.
- B: every student step except the ones the correction replaces: steps N to the last step the summary marks
  Incorrect. The correction (the fixed or justified step N, plus any step the critic inserts) is spliced in their
  place and the student's later steps follow byte for byte, renumbered if the critic inserted a step.
- C: the student ran out of room, so the critic may compress: a correction that starts at an earlier step F
  (1 <= F <= N) replaces the student's steps F..N-1 with its condensed version, and only steps 1..F-1 are copied.

In `splice` mode the service copies those steps from the student's text itself, so fidelity is 100% by
construction. In `scribe` mode the critic wrote the whole solution; `fidelity` measures how much of what it should
have copied it really copied, and `repair_near_copies` puts the student's exact text back where the critic only
paraphrased a step slightly.
"""

from __future__ import annotations

import difflib
import re

from shared.critique_text import ParsedCritique, first_correction_step, render_summary
from shared.schemas import Case, Segmentation, Verdict
from shared.steps import SegmentationError, answer_text, segment

_WS = re.compile(r"\s+")


def _tagged(index: int, text: str) -> str:
    return f"<step_{index}>{text}</step_{index}>"


def replaced_range(critique: ParsedCritique, n_steps: int) -> tuple[int, int]:
    """Case B: the student steps (first, last) the correction replaces: from N to the last step the summary marks
    Incorrect (at least N), clamped to the solution."""
    n = critique.pivotal_step or 1
    wrong = [v.step for v in critique.summary if v.verdict is Verdict.incorrect and v.step >= n]
    return n, min(max([n, *wrong]), n_steps)


def copied_prefix_len(critique: ParsedCritique, n_steps: int) -> int:
    """How many leading student steps the feedback reproduces verbatim: all for case A, N-1 for B and D, and for C
    the steps before the correction's first step (N-1 unless the critic compressed)."""
    if critique.case is Case.A or critique.pivotal_step is None:
        return n_steps
    start = critique.pivotal_step
    if critique.case is Case.C:
        first = first_correction_step(critique.body)
        if first is not None and 1 <= first < start:
            start = first
    return max(0, min(start - 1, n_steps))


def verbatim_pairs(critique: ParsedCritique, n_student: int, n_written: int) -> list[tuple[int, int]]:
    """(student step, step of a scribe-written solution) pairs that must be identical, 1-based. Case B's steps
    after the replaced range are matched from the end, because the critic may have inserted steps before them.
    Case C's copies are those before N (the critic may have compressed them: see `check_fidelity`)."""
    if critique.case is Case.A or critique.pivotal_step is None:
        return [(i, i) for i in range(1, n_student + 1)]
    n = min(critique.pivotal_step, n_student + 1)
    pairs = [(i, i) for i in range(1, n)]
    if critique.case is Case.B:
        _, last = replaced_range(critique, n_student)
        offset = n_written - n_student
        pairs += [(j, j + offset) for j in range(last + 1, n_student + 1)]
    return pairs


def _splice_b(seg: Segmentation, critique: ParsedCritique) -> str:
    n, last = replaced_range(critique, len(seg.steps))
    try:
        correction = segment(critique.body or "")
    except SegmentationError:
        correction = None
    if correction is None:
        return "\n".join([*(_tagged(s.index, s.text) for s in seg.steps[: n - 1]), critique.body or ""])
    parts = [_tagged(s.index, s.text) for s in seg.steps[: n - 1]]
    number = n
    for step in [s.text for s in correction.steps] + [s.text for s in seg.steps[last:]]:
        parts.append(_tagged(number, step))
        number += 1
    answer = answer_text(seg) if seg.answer is not None else answer_text(correction)
    if answer is not None:
        parts.append(f"<answer>{answer}</answer>")
    return "\n".join(parts)


def splice_solution(seg: Segmentation, critique: ParsedCritique) -> str:
    """The faithful-scribe solution of splice mode: the student's own steps where the case keeps them, byte for
    byte, and the critic's correction where it replaces them."""
    if critique.case is Case.B:
        return _splice_b(seg, critique)
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
    """Share of the student steps the scribe solution should reproduce that it reproduces exactly, whitespace
    aside (1.0 when there is nothing to copy)."""
    written = _scribe_steps(solution)
    pairs = verbatim_pairs(critique, len(seg.steps), len(written))
    if not pairs:
        return 1.0
    same = sum(1 for i, j in pairs if 1 <= j <= len(written) and _norm(written[j - 1]) == _norm(seg.steps[i - 1].text))
    return same / len(pairs)


def repair_near_copies(seg: Segmentation, critique: ParsedCritique, solution: str, min_ratio: float = 0.9) -> str:
    """Replace scribe steps that should be copies and are near-copies (similarity >= min_ratio) of the student's
    steps with the student's exact text; steps that differ more are left alone, so fidelity still reports them."""
    try:
        scribe = segment(solution)
    except SegmentationError:
        return solution
    pairs = verbatim_pairs(critique, len(seg.steps), len(scribe.steps))
    out = solution
    # Right to left, so earlier spans stay valid while later ones are rewritten.
    for i, j in sorted(pairs, key=lambda p: -p[1]):
        if not 1 <= j <= len(scribe.steps):
            continue
        step, original = scribe.steps[j - 1], seg.steps[i - 1].text
        if step.text == original:
            continue
        if difflib.SequenceMatcher(None, _norm(step.text), _norm(original)).ratio() >= min_ratio:
            out = out[: step.start] + original + out[step.end :]
    return out
