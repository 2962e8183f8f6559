"""Segment a student's solution into numbered steps with character spans into the original text.

Conventions are tried in the order of DESIGN.md: `<step_k>` tags (closing tags optional), then `Step k:` lines,
then blank-line paragraphs. A `<think>` block is stripped first (also one whose opening tag is missing), and an
`<answer>` block is kept out of the steps and reported as its own span. Spans always index the text as given, so
the trainer can map a step to token offsets and the scribe can copy steps byte for byte.

A step's text starts at its first non-blank character and ends before its trailing blank lines; spaces at the
end of its last line are kept, because they are part of what the student wrote.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from shared.schemas import MAX_STEPS, Segmentation, SegmentationFormat, Span, Step

_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
_STEP_TAG = re.compile(r"<step[_ ]?(\d+)>", re.IGNORECASE)
_STEP_CLOSE = re.compile(r"</step[_ ]?\d+>", re.IGNORECASE)
# "Step 3:", "**Step 3:**", "Step 3.", "### Step 3 -" at the start of a line.
_STEP_LINE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?Step[ \t]+(\d+)[ \t]*(?:[:.)]|--?|—|–)(?:\*\*|__)?[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_PARAGRAPH_BREAK = re.compile(r"\r?\n[ \t\r]*\n")
_TRAILING_BLANK = re.compile(r"(?:\r?\n[ \t\r\n]*|\r)\Z")


class SegmentationError(ValueError):
    """No steps could be found, or too many: says what was seen and what is accepted."""


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink [start, end) to a step's text: drop leading whitespace and trailing blank lines."""
    region = text[start:end]
    lead = len(region) - len(region.lstrip())
    stripped = _TRAILING_BLANK.sub("", region[lead:])
    return start + lead, start + lead + len(stripped)


def _strip_think(text: str) -> tuple[int, Span | None, list[str]]:
    """Where the solution proper starts, the span of a stripped reasoning block, and warnings."""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        last = closes[-1]
        opened = _THINK_OPEN.search(text, 0, last.start())
        warnings = [] if opened else ["'</think>' without '<think>': everything before it was treated as reasoning"]
        return last.end(), Span(start=0, end=last.end()), warnings
    opened = _THINK_OPEN.search(text)
    if opened:
        # An unclosed <think>: the model never finished reasoning; drop only the tag so its text stays usable.
        return opened.end(), Span(start=opened.start(), end=opened.end()), ["'<think>' was never closed"]
    return 0, None, []


def _find_answer(text: str, begin: int) -> tuple[int, Span | None]:
    """End of the steps region and the span of the <answer> content (closing tag optional)."""
    opened = _ANSWER_OPEN.search(text, begin)
    if not opened:
        return len(text), None
    closed = _ANSWER_CLOSE.search(text, opened.end())
    content_end = closed.start() if closed else len(text)
    start, end = _trim(text, opened.end(), content_end)
    return opened.start(), Span(start=start, end=end)


def _by_tags(text: str, begin: int, end: int, warnings: list[str]) -> list[tuple[int, int]] | None:
    opens = list(_STEP_TAG.finditer(text, begin, end))
    if not opens:
        return None
    numbers = [int(m.group(1)) for m in opens]
    if numbers != list(range(1, len(numbers) + 1)):
        warnings.append(f"step tags numbered {numbers[:12]}; steps renumbered 1..{len(numbers)} in order")
    spans = []
    for i, m in enumerate(opens):
        stop = opens[i + 1].start() if i + 1 < len(opens) else end
        closed = _STEP_CLOSE.search(text, m.end(), stop)
        spans.append(_trim(text, m.end(), closed.start() if closed else stop))
    return spans


def _by_step_lines(text: str, begin: int, end: int, warnings: list[str]) -> list[tuple[int, int]] | None:
    # Only the next expected number starts a new step, so a step that itself quotes "Step 2:" is not split.
    markers = []
    expected = 1
    for m in _STEP_LINE.finditer(text, begin, end):
        if int(m.group(1)) == expected:
            markers.append(m)
            expected += 1
    if not markers:
        return None
    if text[begin : markers[0].start()].strip():
        # Prose before "Step 1:". If the text is laid out in paragraphs anyway, the prose is a step of its own
        # and the markers are part of the steps' text; otherwise keep the marked steps and say what was left.
        if len(_by_paragraphs(text, begin, end)) >= len(markers):
            return None
        warnings.append("text before 'Step 1:' is not part of any step")
    return [
        _trim(text, m.end(), markers[i + 1].start() if i + 1 < len(markers) else end) for i, m in enumerate(markers)
    ]


def _by_paragraphs(text: str, begin: int, end: int) -> list[tuple[int, int]]:
    spans = []
    cursor = begin
    for brk in _PARAGRAPH_BREAK.finditer(text, begin, end):
        spans.append(_trim(text, cursor, brk.start()))
        cursor = brk.end()
    spans.append(_trim(text, cursor, end))
    return [s for s in spans if s[1] > s[0]]


def segment(text: str, *, max_steps: int = MAX_STEPS) -> Segmentation:
    """Split a student solution into 1-based steps; raise `SegmentationError` if there are none or too many."""
    begin, think, warnings = _strip_think(text)
    end, answer = _find_answer(text, begin)
    spans = _by_tags(text, begin, end, warnings)
    fmt = SegmentationFormat.tags
    if spans is None:
        spans, fmt = _by_step_lines(text, begin, end, warnings), SegmentationFormat.step_lines
    if spans is None:
        spans, fmt = _by_paragraphs(text, begin, end), SegmentationFormat.paragraphs
    empty = [i + 1 for i, (s, e) in enumerate(spans) if e <= s]
    if empty:
        warnings.append(f"empty steps {empty} were dropped")
        spans = [(s, e) for s, e in spans if e > s]
    if not spans:
        where = "after the </think> block" if think else "in the text"
        raise SegmentationError(
            f"no steps found {where}: expected <step_k> tags, 'Step k:' lines or blank-line paragraphs"
        )
    if len(spans) > max_steps:
        raise SegmentationError(f"{len(spans)} steps found ({fmt.value}); at most {max_steps} are accepted")
    steps = [Step(index=i + 1, text=text[s:e], start=s, end=e) for i, (s, e) in enumerate(spans)]
    return Segmentation(format=fmt, text=text, steps=steps, answer=answer, think=think, warnings=warnings)


def join_tagged(steps: Sequence[str], final_answer: str | None = None) -> str:
    """The canonical student format: one `<step_k>` block per line, then `<answer>` if an answer is given."""
    lines = [f"<step_{i}>{s}</step_{i}>" for i, s in enumerate(steps, start=1)]
    if final_answer is not None:
        lines.append(f"<answer>{final_answer}</answer>")
    return "\n".join(lines)


def segment_explicit(
    steps: Sequence[str], final_answer: str | None = None, *, max_steps: int = MAX_STEPS
) -> Segmentation:
    """Segmentation of steps a client sent as a list: exactly those steps, with spans into their tagged join."""
    if not steps:
        raise SegmentationError("`steps` is empty: send at least one step")
    if len(steps) > max_steps:
        raise SegmentationError(f"{len(steps)} steps sent; at most {max_steps} are accepted")
    text = join_tagged(steps, final_answer)
    out: list[Step] = []
    cursor = 0
    for i, s in enumerate(steps, start=1):
        start = text.index(f"<step_{i}>", cursor) + len(f"<step_{i}>")
        out.append(Step(index=i, text=s, start=start, end=start + len(s)))
        cursor = start + len(s)
    answer = None
    if final_answer is not None:
        a = text.rindex("<answer>") + len("<answer>")
        answer = Span(start=a, end=a + len(final_answer))
    return Segmentation(format=SegmentationFormat.explicit, text=text, steps=out, answer=answer)


def answer_text(seg: Segmentation) -> str | None:
    """The content of the solution's <answer> block, if it had one."""
    return seg.text[seg.answer.start : seg.answer.end] if seg.answer else None
