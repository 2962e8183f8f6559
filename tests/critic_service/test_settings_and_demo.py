"""Configuration resolution (CLI > environment > config file > defaults), secrets masking, and `make demo`'s job."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from critic_service.cli import build_parser
from critic_service.cli import main as cli_main
from critic_service.settings import (
    QWQ_SAMPLING,
    Settings,
    cli_values,
    load_settings,
    read_config_file,
    resolve_settings,
)
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


def _serve_help() -> str:
    parser, _ = build_parser()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    return " ".join(out.getvalue().split())  # argparse wraps lines


def _flags() -> dict[str, tuple[str, FieldInfo]]:
    """Every setting's flag: --kebab-name, nested model fields dotted (--sampling.max-tokens)."""
    flags = {}
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            for sub, subfield in kind.model_fields.items():
                flags[f"--{name}.{sub}".replace("_", "-")] = (name, subfield)
        else:
            flags[f"--{name}".replace("_", "-")] = (name, field)
    return flags


def test_every_setting_is_a_documented_serve_flag() -> None:
    text = _serve_help()
    for flag, (_, field) in _flags().items():
        assert field.description, f"{flag} has no description"
        assert re.search(rf"(?<![\w.-]){re.escape(flag)}(?![\w.-])", text), f"{flag} is not in serve --help"
        assert " ".join(field.description.split()) in text, f"the description of {flag} is not in serve --help"


VALUES = {bool: None, int: "7", float: "0.5", str: "x"}


def _value(flag: str, field: FieldInfo) -> list[str]:
    if field.annotation is bool:
        return [flag]
    for kind, value in VALUES.items():
        if field.annotation in (kind, kind | None):
            return [flag, value]
    if flag.endswith(("-path", "-file")):
        return [flag, "some/file"]
    choices = getattr(field.annotation, "__args__", ())
    if choices and all(isinstance(c, str) for c in choices):
        return [flag, choices[0]]
    return [flag, "{}" if "dict" in str(field.annotation) or "Limits" in str(field.annotation) else "a,b"]


def test_every_setting_reaches_the_cli() -> None:
    parser, source = build_parser()
    for flag, (name, field) in _flags().items():
        args = parser.parse_args(["serve", *_value(flag, field)])
        assert name in cli_values(source, args), f"{flag} did not reach Settings.{name}"


def test_cli_over_env_over_file_over_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "critic.yaml"
    cfg.write_text("port: 9001\nmax_attempts: 5\nhost: 0.0.0.0\nsampling:\n  temperature: 0.3\n  top_p: 0.9\n")
    monkeypatch.setenv("STEPALIGN_MAX_ATTEMPTS", "4")
    monkeypatch.setenv("STEPALIGN_HOST", "127.0.0.2")
    monkeypatch.setenv("STEPALIGN_SAMPLING__TOP_P", "0.8")
    monkeypatch.setenv("STEPALIGN_CACHE_PATH", "null")
    parser, source = build_parser()

    def resolved(*argv: str) -> Settings:
        args = parser.parse_args(["serve", "--config", str(cfg), *argv])
        return resolve_settings(cli_values(source, args), args.config)

    s = resolved("--host", "127.0.0.3", "--sampling.top-k", "40")
    assert (s.port, s.max_attempts, s.host) == (9001, 4, "127.0.0.3")  # file, environment, command line
    assert (s.sampling.temperature, s.sampling.top_p, s.sampling.top_k) == (0.3, 0.8, 40)  # merged key by key
    assert s.sampling.max_tokens == 16384 and s.max_queue == 1024 and s.cache_path is None  # defaults; env null
    assert resolved("--sampling.top-p", "0.7").sampling.top_p == 0.7


def test_invalid_settings_name_the_flag_and_never_echo_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["serve", "--port", "http", "--openai-api-key", "sk-upstream-secret", "--api-keys", "a b:k-777"])
    err = capsys.readouterr().err
    assert code == 2 and "--port: Input should be a valid integer" in err
    with pytest.raises(SystemExit):
        cli_main(["serve", "--apikeys", "sk-typo-secret"])  # a typo of --api-keys
    err += capsys.readouterr().err
    assert "unrecognized arguments: --apikeys" in err
    assert not [s for s in ("sk-upstream-secret", "k-777", "sk-typo-secret") if s in err]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert cli_main(["serve", "--api-keys", "a b:k-777", "--port", "0"]) == 2  # refused before binding
    finally:  # serve configured this process's logging
        root.handlers[:], root.level = handlers, level
    err = capsys.readouterr().err
    assert "a key's name must match" in err and "k-777" not in err
