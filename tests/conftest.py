"""Test-wide fixtures: where the handbook's real datasets live (../shared/data beside the checkout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        pytest.fail(f"{path} is missing: the handbook folder ../shared/data must sit beside the checkout")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def processbench() -> list[dict[str, Any]]:
    rows = load_jsonl(DATA / "processbench" / "gsm8k.jsonl") + load_jsonl(DATA / "processbench" / "math.jsonl")
    assert len(rows) == 1400
    return rows


@pytest.fixture(scope="session")
def math500() -> list[dict[str, Any]]:
    rows = load_jsonl(DATA / "math500" / "test.jsonl")
    assert len(rows) == 500
    return rows


pytest_plugins = ["tests.fixtures"]
