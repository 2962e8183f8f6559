"""Tolerance corpus for the critic's text schema: does `parse` read what real reasoning models write?

`data/critic_corpus.yaml` holds hand-written critic outputs in the styles QwQ-32B, DeepSeek-R1, Qwen3 and
GPT-style chat models actually produce (think blocks, a missing opening `<think>`, markdown bold and headings,
bullets, dash and colon note separators, code fences, CRLF, surrounding prose, scribe-mode `Solution:`), each
with the parse a careful human reader expects. The expectations are the reader's, not the parser's: a failure
here means `shared.critique_text.parse` misreads a realistic critique. Items marked `line_endings: crlf` are
parsed with every newline turned into CRLF; their expected bodies are written with plain newlines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.critique_text import ParsedCritique, parse, render

CORPUS_PATH = Path(__file__).parent / "data" / "critic_corpus.yaml"


def _load() -> list[dict[str, Any]]:
    with CORPUS_PATH.open(encoding="utf-8") as f:
        items = yaml.safe_load(f)
    assert isinstance(items, list)
    return items


CORPUS = _load()


def _text(item: dict[str, Any]) -> str:
    text: str = item["text"]
    if item.get("line_endings") == "crlf":
        text = text.replace("\n", "\r\n")
    return text


def test_corpus_is_large_enough_and_well_formed() -> None:
    assert len(CORPUS) >= 30
    names = [item["name"] for item in CORPUS]
    assert len(names) == len(set(names)), "item names must be unique"
    for item in CORPUS:
        assert {"name", "style", "text", "expected"} <= item.keys(), item.get("name")
        assert item["expected"]["case"] in {"A", "B", "C", "D"}, item["name"]
        assert item["expected"]["body_kind"] in {"Correction", "Solution"}, item["name"]


@pytest.mark.parametrize("item", CORPUS, ids=[item["name"] for item in CORPUS])
def test_parse_matches_human_reading(item: dict[str, Any]) -> None:
    expected = item["expected"]
    got = parse(_text(item))
    assert got.case.value == expected["case"]
    assert got.pivotal_step == expected["pivotal_step"]
    assert [(v.step, v.verdict.value, v.note) for v in got.summary] == [
        (step, verdict, note) for step, verdict, note in expected["summary"]
    ]
    assert got.body == expected["body"]
    assert got.body_kind == expected["body_kind"]


def test_canonical_render_round_trips() -> None:
    """For every item, the canonical rendering of its parse parses back to the same critique."""
    for item in CORPUS:
        parsed: ParsedCritique = parse(_text(item))
        assert parse(render(parsed)) == parsed, item["name"]
