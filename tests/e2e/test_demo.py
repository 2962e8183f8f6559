"""`make demo`'s job: a critic server and a short StepAlignFB run over HTTP, with a summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_demo_trains_against_a_real_critic(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trainer.toy.demo", "--out", str(tmp_path), "--steps", "3"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "condition stepalign, 3 steps" in out.stdout
    assert "critiques by case:" in out.stdout and "distillation mask rate:" in out.stdout
    assert "critic: stopped" in out.stdout
    assert "%|" in out.stderr  # progress bars
    log = [json.loads(x) for x in (tmp_path / "run" / "critiques.jsonl").read_text().splitlines()]
    assert len(log) == 3 * 8 and all(e["critique"] for e in log)
    assert log[0]["critique"]["feedback"].splitlines()[0] in out.stdout
