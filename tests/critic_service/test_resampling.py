"""The critique core under fault injection: resampling, invalid output, engine crashes, timeouts, overload,
cancellation and undecided answer checks; the service keeps working and leaks nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from critic_service.app import create_app
from critic_service.settings import Settings
from tests.critic_service.fakes import INVALID, VALID_D, ScriptedEngine
from tests.critic_service.test_server import REQUEST
from tests.servers import app_thread, ready_client


def _settings(**kw: object) -> Settings:
    return Settings(cache_path=None, answer_workers=1, **kw)  # type: ignore[arg-type]


@pytest.fixture
def client_for() -> Iterator[object]:
    with contextlib.ExitStack() as stack:

        def make(engine: ScriptedEngine, **kw: object) -> TestClient:
            client: TestClient = stack.enter_context(ready_client(create_app(_settings(**kw), engine=engine)))
            return client

        yield make


@pytest.mark.parametrize("k", [0, 1, 2])
def test_invalid_k_times_then_valid(client_for, k: int) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine([INVALID] * k + [VALID_D])
    r = client_for(engine).post("/v1/critiques", json=REQUEST)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["meta"]["attempts"] == k + 1 and engine.calls == k + 1
    assert body["meta"]["usage"] == {
        "prompt_tokens": 100 * (k + 1),
        "completion_tokens": 50 * (k + 1),
        "reasoning_tokens": 10 * (k + 1),
    }
    assert body["case"] == "D" and body["pivotal_step"] == 2
    if k:
        retry = engine.jobs[1].messages
        assert retry[-2] == {"role": "assistant", "content": INVALID}
        assert "pivotal step" in retry[-1]["content"].lower() and "rejected" in retry[-1]["content"]


def test_always_invalid_is_a_502_listing_every_attempt(client_for) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine([INVALID, "no schema at all", VALID_D.replace("Case: D", "Case: A")])
    client = client_for(engine, max_attempts=3)
    r = client.post("/v1/critiques", json=REQUEST)
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "invalid_critique" and "3 attempts" in err["message"]
    assert [d["attempt"] for d in err["details"]] == [1, 2, 3]
    assert any("Pivotal step" in e for e in err["details"][0]["errors"])
    assert any("Case: A|B|C|D" in e for e in err["details"][1]["errors"])
    assert any("case_vs_answer" in e for e in err["details"][2]["errors"])
    # The service is still healthy and answers the next request.
    engine.outputs = [VALID_D]
    engine.calls = 0
    assert client.post("/v1/critiques", json=REQUEST).status_code == 200


def test_engine_crash_is_a_502_and_not_fatal(client_for) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine([VALID_D], fail=lambda n: RuntimeError("CUDA fell over") if n == 1 else None)
    client = client_for(engine)
    r = client.post("/v1/critiques", json=REQUEST)
    assert r.status_code == 502 and r.json()["error"]["code"] == "engine_error"
    assert "CUDA fell over" in r.json()["error"]["message"]
    assert client.post("/v1/critiques", json=REQUEST).status_code == 200


def test_deadline_is_a_504(client_for) -> None:  # type: ignore[no-untyped-def]
    engine = ScriptedEngine([VALID_D], delay_s=5)
    r = client_for(engine, request_timeout_s=0.3).post("/v1/critiques", json=REQUEST)
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert engine.cancelled == 1


def test_overload_is_a_503_with_retry_after() -> None:
    engine = ScriptedEngine([VALID_D], delay_s=1.0)
    app = create_app(_settings(max_concurrency=1, max_queue=0), engine=engine)
    with app_thread(app) as url:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=10) as c:
                first = asyncio.create_task(c.post("/v1/critiques", json=REQUEST))
                await asyncio.sleep(0.3)
                # A different request: an identical one would share the first one's engine call.
                second = await c.post("/v1/critiques", json={**REQUEST, "feedback_mode": "scribe"})
                return [await first, second]

        ok, refused = asyncio.run(burst())
    assert ok.status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "overloaded"


def test_client_disconnect_cancels_the_engine_work() -> None:
    engine = ScriptedEngine([VALID_D], delay_s=30)
    app = create_app(_settings(), engine=engine)
    with app_thread(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/critiques", json=REQUEST, timeout=1.0)
        for _ in range(50):
            if engine.cancelled:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert engine.cancelled == 1 and engine.running == 0
        metrics = httpx.get(f"{url}/metrics").text
        assert "stepalign_in_flight 0.0" in metrics


def test_undecided_answer_check_still_answers(client_for) -> None:  # type: ignore[no-untyped-def]
    hard = "9^{9^{9^{9}}}"
    engine = ScriptedEngine([VALID_D.replace("\\boxed{132}", "\\boxed{" + hard + "}")])
    client = client_for(engine, answer_timeout_s=1)
    r = client.post(
        "/v1/critiques",
        json={**REQUEST, "reference_answer": hard, "student_solution": REQUEST["student_solution"].replace("134", "3")},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer_check"]["status"] == "undecided" and body["answer_check"]["equivalent"] is None
    rules = {c["rule"]: c for c in body["checks"]["results"]}
    assert rules["case_vs_answer"]["passed"] is None and "undecided" in rules["case_vs_answer"]["detail"]


def test_math_verify_never_runs_in_the_service_process(client_for, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import math_verify

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("math-verify was called in the service process")

    monkeypatch.setattr(math_verify, "verify", boom)
    monkeypatch.setattr(math_verify, "parse", boom)
    engine = ScriptedEngine([VALID_D])
    body = client_for(engine).post("/v1/critiques", json={**REQUEST, "reference_answer": "\\frac{264}{2}"}).json()
    assert body["answer_check"]["status"] == "not_equivalent"  # decided, by a worker process
    assert body["checks"]["results"][3] == {"rule": "correction_answer", "passed": True, "detail": ""}


def test_nothing_leaks_over_many_failures() -> None:
    me = psutil.Process(os.getpid())
    engine = ScriptedEngine([INVALID])
    with ready_client(create_app(_settings(max_attempts=2), engine=engine)) as client:
        client.post("/v1/critiques", json=REQUEST)
        children = len(me.children(recursive=True))
        threads = me.num_threads()
        for _ in range(40):
            assert client.post("/v1/critiques", json=REQUEST).status_code == 502
        assert len(me.children(recursive=True)) == children
        assert me.num_threads() <= threads + 2
    assert engine.calls == 82
