"""Run schemathesis against a running critic's own /openapi.json, with every check (its own and
`fuzz_checks`), a fixed seed and a bounded number of examples, and sum up what it sent and got.

Used by the suite's short run (test_fuzz.py) and by the full run (bench/fuzz.py).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIG = """
# A schema-valid request may be refused for its content (422 unsupported_problem / segmentation_failed), never
# for its shape: fuzz_checks.schema_valid_is_not_rejected_for_shape tells the two apart.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "422"]
"""


@dataclass
class FuzzResult:
    exit_code: int
    report: dict[str, Any]
    requests: int
    by_operation: dict[str, int]
    by_status: dict[int, int]
    output: str
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.by_status.items() if status >= 500)

    def summary(self) -> str:
        ops = ", ".join(f"{op}: {n}" for op, n in sorted(self.by_operation.items()))
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        cases = self.report.get("test_cases", {})
        return (
            f"{self.requests} requests ({cases.get('generated', 0)} generated test cases) in "
            f"{self.report.get('running_time', 0):.1f} s; failures: {len(self.failures)}; "
            f"errors: {len(self.report.get('errors', []))}\n  by operation: {ops}\n  by status: {statuses}"
        )


def _operation(method: str, url: str, paths: list[str]) -> str:
    path = "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    return f"{method} {path if path in paths else '(other path)'}"


def _one_pass(
    url: str, out: Path, phases: str, examples: int, seed: int, key: str | None
) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    cmd = [str(exe), "--config-file", str(out / "schemathesis.toml"), "--no-color", "run", f"{url}/openapi.json"]
    cmd += ["--checks", "all", "--seed", str(seed), "--max-examples", str(examples), "--phases", phases]
    cmd += ["--report", "json,har", "--report-dir", str(out / phases), "--request-timeout", "30"]
    cmd += ["--generation-database", "none", "--suppress-health-check", "all"]
    if key is not None:
        cmd += ["--header", f"Authorization: Bearer {key}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.critic_service.fuzz_checks", "PYTHONPATH": str(REPO)}
    env["STEPALIGN_FUZZ_PASS"] = phases
    return subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=3600)


def run_schemathesis(url: str, out: Path, *, examples: int, seed: int, key: str | None = None) -> FuzzResult:
    """`st run URL/openapi.json --checks all` with our hooks, in two passes: the examples and coverage phases
    on the schema as published, then the fuzzing phase (see `fuzz_checks.before_load_schema`). The JSON and
    HAR reports go to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "schemathesis.toml").write_text(CONFIG)
    procs = [_one_pass(url, out, phases, examples, seed, key) for phases in ("examples,coverage", "fuzzing")]
    paths = list(json.loads(_fetch(f"{url}/openapi.json", key))["paths"])
    by_operation: collections.Counter[str] = collections.Counter()
    by_status: collections.Counter[int] = collections.Counter()
    report: dict[str, Any] = {"failures": [], "errors": [], "running_time": 0.0, "test_cases": {"generated": 0}}
    for part in sorted(out.glob("*/json-*.json")):
        data = json.loads(part.read_text())
        report["failures"] += data.get("failures", [])
        report["errors"] += data.get("errors", [])
        report["running_time"] += data.get("running_time", 0.0)
        report["test_cases"]["generated"] += data.get("test_cases", {}).get("generated", 0)
    for har in out.glob("*/har-*.json"):
        for entry in json.loads(har.read_text())["log"]["entries"]:
            by_operation[_operation(entry["request"]["method"], entry["request"]["url"], paths)] += 1
            by_status[int(entry["response"]["status"])] += 1
    return FuzzResult(
        exit_code=max(p.returncode for p in procs),
        report=report,
        requests=sum(by_status.values()),
        by_operation=dict(by_operation),
        by_status=dict(by_status),
        output="\n".join(p.stdout[-4000:] + p.stderr[-2000:] for p in procs),
        failures=list(report["failures"]),
    )


def _fetch(url: str, key: str | None) -> str:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(url, headers=headers, timeout=10).text
