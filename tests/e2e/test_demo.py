"""`stepalign-train demo --quick`: the demo's whole pipeline on a fresh quick solver (pretraining included), with
a real critic process, the real trainer for four conditions, the real eval and analyze; the report's numbers are
recomputed here from what the run wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO

pytestmark = pytest.mark.slow
CONDITIONS = ["GRPO", "RefSol", "StepAlignFB", "StepAlignFB + cut"]


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.srcs.append(dict(attrs)["src"] or "")
        self.tables += tag == "table"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("demo")
    out = root / "run"
    cmd = [sys.executable, "-m", "trainer.cli", "demo", "--quick", "--output", str(out),
           "--solver-cache", str(root / "solver")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_it_says_what_it_does_and_where_the_report_is(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, done = demo
    first = done.stdout.splitlines()[:8]
    assert any("Expected time: about" in line for line in first) and any("pretrain" in line for line in first)
    assert f"Report: {out / 'report.md'}" in done.stdout.splitlines()[-1]
    assert "{'loss'" not in done.stdout  # no metric dicts for a person to read
    assert "pretraining:" in done.stderr and "training:" in done.stderr  # progress bars
    assert (out / "critic.log").read_text().count('"path": "/v1/critiques/batch"') > 0  # the critic's own log


def test_the_table_is_computed_from_the_evaluated_samples(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, done = demo
    report = json.loads((out / "report.json").read_text())
    samples = [json.loads(x) for x in (out / "eval" / "greedy" / "samples.jsonl").read_text().splitlines()]
    by_model: dict[str, list[bool]] = {}
    for s in samples:
        by_model.setdefault(s["checkpoint"], []).append(s["correct"] is True)
    rows = {r["condition"]: r for r in report["table"]}
    assert sorted(rows) == sorted(["start", *CONDITIONS])
    for cond, row in rows.items():
        name = "start" if cond == "start" else f"{cond} | seed 0"
        marks = by_model[name]
        assert len(marks) == report["eval"]["greedy"]["problems"] == 100
        assert row["greedy_mean"] == pytest.approx(100 * sum(marks) / len(marks), abs=0.01)
        assert f"| {cond} | {row['greedy_mean']} |" in report["table_md"]
    assert report["table_md"] in done.stdout and report["table_md"] in (out / "report.md").read_text()
    for run in report["runs"]:  # each condition really trained, through the real trainer's run folder
        config = json.loads((Path(run["run"]) / "config.resolved.json").read_text())
        steps = [json.loads(x) for x in (Path(run["run"]) / "metrics.jsonl").read_text().splitlines()]
        assert run["steps"] == config["trl"]["max_steps"] == 10 and [s["step"] for s in steps if "loss" in s][-1] == 10


def test_the_quick_solver_shows_a_context_gap(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = demo
    gap = json.loads((out / "report.json").read_text())["context_gap"]
    fb, student = gap["feedback"], gap["student"]
    assert student["accuracy"] == student["correct"] / gap["problems"]
    assert fb["attempts"] > 0 and fb["accuracy"] == fb["correct"] / fb["attempts"]
    assert 100 * (fb["accuracy"] - student["accuracy"]) >= 30, gap


def test_the_files_are_well_formed(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = demo
    md = (out / "report.md").read_text()
    for heading in ("## Comparison", "## Context gap", "## Where the learning signal lands", "## One rollout"):
        assert heading in md
    page = _Images()
    page.feed((out / "report.html").read_text())
    assert page.tables >= 3 and page.srcs
    for src in page.srcs:
        image = Image.open(out / src)
        assert image.size == (1100, 400) and len(set(image.convert("L").getdata())) > 10
    analysis = json.loads((out / "analysis" / "analysis.json").read_text())
    assert analysis["rollouts"] and {"stepalign", "refsol"} <= set(analysis["aggregate"])
    assert (out / "analysis" / "advantages.html").read_text().count("<span class='tok") > 100
