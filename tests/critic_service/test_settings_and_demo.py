"""Configuration resolution (CLI > environment > config file > defaults), secrets masking, and `make demo`'s job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from critic_service.settings import QWQ_SAMPLING, Settings, load_settings, read_config_file
from tests.conftest import REPO


def test_priority_cli_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "critic.yaml"
    cfg.write_text("port: 9001\nmax_attempts: 5\nhost: 0.0.0.0\nsampling:\n  temperature: 0.3\n")
    monkeypatch.setenv("STEPALIGN_MAX_ATTEMPTS", "4")
    monkeypatch.setenv("STEPALIGN_HOST", "127.0.0.2")
    s = load_settings(cfg, host="127.0.0.3", port=None)
    assert (s.port, s.max_attempts, s.host) == (9001, 4, "127.0.0.3")
    assert s.sampling.temperature == 0.3


def test_json_config_and_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "c.json"
    good.write_text('{"engine": "checker", "max_concurrency": 3}')
    assert load_settings(good).max_concurrency == 3
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        read_config_file(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("max_atempts: 3\n")
    with pytest.raises(ValidationError, match="max_atempts"):
        load_settings(typo)


def test_engine_inference_keys_and_masking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().engine_name == "checker"
    assert Settings(model="Qwen/QwQ-32B").engine_name == "vllm"
    assert Settings(openai_base_url="http://x/v1", model="m").engine_name == "openai"
    keys = tmp_path / "keys"
    keys.write_text("# comment\nk-file\n\n")
    monkeypatch.setenv("STEPALIGN_API_KEYS", "k-env-1, k-env-2")
    monkeypatch.setenv("STEPALIGN_OPENAI_API_KEY", "upstream-secret")
    s = load_settings(api_keys_file=keys)
    assert s.keys() == ["k-env-1", "k-env-2", "k-file"]
    dumped = str(s.public_dump())
    assert "k-env" not in dumped and "upstream-secret" not in dumped and "***" in dumped
    assert Settings(qwq_sampling=True).effective_sampling == QWQ_SAMPLING


def test_make_demo_job() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "critic_service.demo"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "Case D, pivotal step 2" in out.stdout
    assert "Step 2: Incorrect -- 85 - 19 is 66, not 67" in out.stdout
    assert "stopped the critic" in out.stdout
