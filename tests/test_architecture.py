"""Layering rules: `shared` stays light, the two halves never import each other, nothing heavy at import time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "vllm", "transformers", "trl", "fastapi", "starlette", "uvicorn", "sympy", "math_verify")


def test_import_linter_contracts_hold() -> None:
    bin_dir = REPO / ".venv" / "bin"
    exe = bin_dir / "lint-imports" if (bin_dir / "lint-imports").exists() else "lint-imports"
    result = subprocess.run([str(exe)], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module",
    ["shared", "shared.schemas", "shared.steps", "shared.answers", "shared.prompts", "shared.scribe"],
)
def test_importing_shared_loads_nothing_heavy(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""
