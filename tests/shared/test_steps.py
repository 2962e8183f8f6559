"""Segmentation of student solutions, checked on 1,400 real model-written ProcessBench solutions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.schemas import CritiqueRequest, SegmentationFormat
from shared.steps import SegmentationError, answer_text, join_tagged, segment, segment_explicit


def _tags_closed(steps: list[str]) -> str:
    return join_tagged(steps, "\\boxed{42}")


def _tags_open(steps: list[str]) -> str:
    return "\n".join(f"<step_{i}>{s}" for i, s in enumerate(steps, 1)) + "\n<answer>\\boxed{42}"


def _tags_in_think(steps: list[str]) -> str:
    return "<think>\nLet me think. <step_1>draft</step_1>\n</think>\n" + join_tagged(steps, "\\boxed{42}")


def _unopened_think(steps: list[str]) -> str:
    return "Okay, so step 1 is... no.\n\nWait.</think>\n\n" + join_tagged(steps)


def _step_lines(steps: list[str]) -> str:
    return "\n".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1))


def _bold_step_lines(steps: list[str]) -> str:
    return "\n\n".join(f"**Step {i}:** {s}" for i, s in enumerate(steps, 1))


def _paragraphs(steps: list[str]) -> str:
    return "\n\n".join(steps)


FORMATS: dict[str, tuple[Callable[[list[str]], str], SegmentationFormat]] = {
    "tags_closed": (_tags_closed, SegmentationFormat.tags),
    "tags_open": (_tags_open, SegmentationFormat.tags),
    "tags_after_think": (_tags_in_think, SegmentationFormat.tags),
    "unopened_think": (_unopened_think, SegmentationFormat.tags),
    "step_lines": (_step_lines, SegmentationFormat.step_lines),
    "bold_step_lines": (_bold_step_lines, SegmentationFormat.step_lines),
    "paragraphs": (_paragraphs, SegmentationFormat.paragraphs),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_processbench_round_trip(processbench: list[dict[str, Any]], fmt: str) -> None:
    join, expected_format = FORMATS[fmt]
    bad = []
    for row in processbench:
        text = join(row["steps"])
        seg = segment(text)
        got = [s.text for s in seg.steps]
        if got != row["steps"] or seg.format is not expected_format:
            bad.append((row["id"], len(got), len(row["steps"]), seg.format))
        for s in seg.steps:  # spans point at exactly the step text in the original
            assert text[s.start : s.end] == s.text
    assert not bad, f"{len(bad)} of {len(processbench)} rows differ, first: {bad[:5]}"


def test_processbench_explicit_steps(processbench: list[dict[str, Any]]) -> None:
    for row in processbench:
        req = CritiqueRequest(problem=row["problem"], reference_answer="1", steps=row["steps"])
        assert req.steps is not None
        seg = segment_explicit(req.steps)
        assert seg.format is SegmentationFormat.explicit
        assert [s.text for s in seg.steps] == row["steps"]
        assert [s.index for s in seg.steps] == list(range(1, len(row["steps"]) + 1))
        assert all(seg.text[s.start : s.end] == s.text for s in seg.steps)
        # The built text is itself a tagged solution that segments back to the same steps.
        assert [s.text for s in segment(seg.text).steps] == row["steps"]


def test_think_block_is_stripped_and_reported() -> None:
    text = "<think>Step 1: scratch</think><step_1>x = 2</step_1><step_2>y = 3</step_2>"
    seg = segment(text)
    assert [s.text for s in seg.steps] == ["x = 2", "y = 3"]
    assert seg.think is not None and text[seg.think.start : seg.think.end] == "<think>Step 1: scratch</think>"


def test_unopened_think_is_stripped_with_warning() -> None:
    seg = segment("reasoning here\n</think>\nStep 1: a\nStep 2: b")
    assert [s.text for s in seg.steps] == ["a", "b"]
    assert seg.warnings and "without '<think>'" in seg.warnings[0]


def test_unclosed_think_keeps_the_text() -> None:
    seg = segment("<think>\nStep 1: a\nStep 2: b")
    assert [s.text for s in seg.steps] == ["a", "b"]
    assert any("never closed" in w for w in seg.warnings)


def test_answer_span_is_reported_and_kept_out_of_steps() -> None:
    text = "<step_1>2+2=4</step_1>\n<answer> \\boxed{4} </answer> trailing"
    seg = segment(text)
    assert [s.text for s in seg.steps] == ["2+2=4"]
    assert answer_text(seg) == "\\boxed{4} "
    unclosed = segment("<step_1>2+2=4\n<answer>\\boxed{4}")
    assert answer_text(unclosed) == "\\boxed{4}"


def test_misnumbered_tags_are_renumbered_with_a_warning() -> None:
    seg = segment("<step_2>a</step_2><step_5>b</step_5>")
    assert [(s.index, s.text) for s in seg.steps] == [(1, "a"), (2, "b")]
    assert "renumbered" in seg.warnings[0]


def test_step_lines_only_split_on_the_next_number() -> None:
    seg = segment("Step 1: first\nStep 3: quoted, not a step\nStep 2: second")
    assert [s.text for s in seg.steps] == ["first\nStep 3: quoted, not a step", "second"]


def test_step_lines_with_preamble() -> None:
    # Laid out as paragraphs: the preamble is a step and the markers stay in the text.
    para = segment("Let's solve it.\n\nStep 1: a\n\nStep 2: b")
    assert para.format is SegmentationFormat.paragraphs
    assert [s.text for s in para.steps] == ["Let's solve it.", "Step 1: a", "Step 2: b"]
    # Lines only: the marked steps win and the preamble is reported.
    lines = segment("Let's solve it.\nStep 1: a\nStep 2: b")
    assert lines.format is SegmentationFormat.step_lines
    assert [s.text for s in lines.steps] == ["a", "b"]
    assert any("before 'Step 1:'" in w for w in lines.warnings)


def test_crlf_paragraphs_and_trailing_spaces() -> None:
    seg = segment("one  \r\n\r\ntwo\r\n \r\n\r\nthree\r\n")
    assert [s.text for s in seg.steps] == ["one  ", "two", "three"]


def test_empty_tagged_steps_are_dropped() -> None:
    seg = segment("<step_1>a</step_1><step_2>   </step_2><step_3>c</step_3>")
    assert [s.text for s in seg.steps] == ["a", "c"]
    assert any("empty steps [2]" in w for w in seg.warnings)


@pytest.mark.parametrize("text", ["", "   \n\n  ", "<think>all reasoning</think>", "<answer>\\boxed{3}</answer>"])
def test_no_steps_is_a_clear_error(text: str) -> None:
    with pytest.raises(SegmentationError, match="no steps found"):
        segment(text)


def test_too_many_steps() -> None:
    with pytest.raises(SegmentationError, match="at most 3"):
        segment("\n\n".join("abcd"), max_steps=3)
    with pytest.raises(SegmentationError, match="at most 2"):
        segment_explicit(["a", "b", "c"], max_steps=2)
    with pytest.raises(SegmentationError, match="empty"):
        segment_explicit([])


def test_explicit_steps_with_final_answer() -> None:
    seg = segment_explicit(["a", "b"], final_answer="\\boxed{1}")
    assert answer_text(seg) == "\\boxed{1}"
