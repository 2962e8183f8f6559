"""Faults, against real server processes: a slow engine load, a failed one, an unreachable upstream, SIGTERM with
critiques in flight, and `kill -9` in the middle of a burst of cache writes."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
from pathlib import Path

import httpx
import psutil
from fastapi.testclient import TestClient

from critic_service.app import create_app
from critic_service.settings import Settings
from shared.schemas import Critique
from tests.critic_service.bodies import distinct_requests
from tests.critic_service.test_server import REQUEST
from tests.servers import free_port, serve_process, wait_until


def test_slow_load_answers_probes_and_refuses_critiques_until_ready(tmp_path: Path) -> None:
    with serve_process(tmp_path, engine_args=["--load-s", "5"], wait_for="/healthz") as s:
        assert httpx.get(f"{s.url}/healthz").json() == {"status": "ok", "detail": ""}
        ready = httpx.get(f"{s.url}/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "5"
        assert ready.json()["status"] == "loading" and "slow" in ready.json()["detail"]
        refused = httpx.post(f"{s.url}/v1/critiques", json=REQUEST)
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "not_ready" and "loading" in refused.json()["error"]["message"]
        assert httpx.get(f"{s.url}/v1/info").json()["engine"] == "slow"  # info does not need the engine
        wait_until("/readyz 200", lambda: httpx.get(f"{s.url}/readyz").status_code == 200, timeout_s=30)
        assert httpx.get(f"{s.url}/healthz").status_code == 200
        assert httpx.post(f"{s.url}/v1/critiques", json=REQUEST).json()["case"] == "D"
    assert re.search(r"engine slow \(slow-checker\) ready in [5-9]\.\d s", s.output())


def test_load_failure_is_reported_on_readyz_and_in_the_log(tmp_path: Path) -> None:
    args = ["--fail-load", "no weights at /models/qwq"]
    with serve_process(tmp_path, "--no-exit-on-load-failure", engine_args=args, wait_for="/healthz") as s:
        failing = wait_until("failing", lambda: (r := httpx.get(f"{s.url}/readyz")).json()["status"] == "failing" and r)
        assert failing.status_code == 503 and "no weights at /models/qwq" in failing.json()["detail"]
        refused = httpx.post(f"{s.url}/v1/critiques", json=REQUEST).json()["error"]
        assert refused["code"] == "not_ready" and "failed to load: RuntimeError: no weights" in refused["message"]
        assert httpx.get(f"{s.url}/healthz").status_code == 200  # alive, so an operator can look
    assert "engine failed to load" in s.output() and "no weights at /models/qwq" in s.output()


def test_load_failure_exits_with_status_3(tmp_path: Path) -> None:
    with serve_process(tmp_path, engine_args=["--fail-load", "CUDA out of memory"], wait_for=None) as s:
        assert s.proc.wait(timeout=60) == 3
    assert "CUDA out of memory" in s.output() and "exiting with status 3" in s.output()


def test_unreachable_upstream_is_named_on_readyz_and_in_the_502() -> None:
    upstream = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings = Settings(engine="openai", openai_base_url=upstream, model="m", cache_path=None, answer_workers=1)
    app = create_app(settings)
    with TestClient(app) as client:
        wait_until("the engine to start", lambda: app.state.service.phase == "ready")
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "failing"
        assert f"upstream {upstream} is unreachable: ConnectError" in ready.json()["detail"]
        err = client.post("/v1/critiques", json=REQUEST).json()["error"]
        assert err["code"] == "engine_error" and "cannot be reached" in err["message"]
        assert err["details"][0]["upstream"] == f"{upstream}/chat/completions"
        assert err["details"][0]["error"].startswith("ConnectError")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigterm_drains_in_flight_critiques_then_stops_the_engine(tmp_path: Path) -> None:
    bodies = distinct_requests(20, seed=1)
    # Half finish within the drain time (1 s), half would take a minute: they get a clean 503.
    bodies = [{**b, "request_id": "sleep=1" if i % 2 == 0 else "sleep=60"} for i, b in enumerate(bodies)]
    serve = ["--drain-timeout-s", "3", "--max-concurrency", "32"]
    with serve_process(tmp_path, *serve, engine_args=["--child"]) as s:
        server = psutil.Process(s.proc.pid)
        family = [p.pid for p in server.children(recursive=True)]
        engine_child = int(re.findall(r"slow engine child pid (\d+)", s.output())[0])
        assert engine_child in family

        async def run() -> tuple[list[httpx.Response], bool]:
            async with httpx.AsyncClient(base_url=s.url, timeout=60) as c:
                tasks = [asyncio.create_task(c.post("/v1/critiques", json=b)) for b in bodies]

                async def in_flight() -> float:
                    text = (await c.get("/metrics")).text
                    return float(re.findall(r"^stepalign_in_flight (\S+)$", text, re.M)[0])

                for _ in range(200):
                    if await in_flight() == 20:
                        break
                    await asyncio.sleep(0.05)
                s.proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                try:
                    await c.get("/healthz", headers={"Connection": "close"})
                    refused = False
                except httpx.TransportError:
                    refused = True
                return list(await asyncio.gather(*tasks)), refused

        responses, refused = asyncio.run(run())
        assert s.proc.wait(timeout=30) == 0
    assert refused, "the server still accepted connections after SIGTERM"
    finished = [r for r in responses if r.status_code == 200]
    cut = [r for r in responses if r.status_code == 503]
    assert len(finished) == 10 and all(r.json()["request_id"] == "sleep=1" for r in finished)
    assert len(cut) == 10 and all(r.json()["error"]["code"] == "not_ready" for r in cut)
    assert all("shutting down" in r.json()["error"]["message"] and r.headers["retry-after"] for r in cut)
    leftovers = [pid for pid in [*family, s.proc.pid] if _alive(pid)]
    assert not leftovers, f"processes outlived the server: {leftovers}"
    assert "shutting down: no new connections; 20 critiques in flight" in s.output()
    assert "leftover child" not in s.output()  # the engine stopped its own process; nothing had to be reaped


def test_sigterm_while_the_engine_loads_stops_at_once(tmp_path: Path) -> None:
    with serve_process(tmp_path, engine_args=["--load-s", "120", "--child"], wait_for="/healthz") as s:
        family = [p.pid for p in psutil.Process(s.proc.pid).children(recursive=True)]
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=20) == 0
    assert "cancelling the load" in s.output()
    assert not [pid for pid in family if _alive(pid)]


def test_kill_9_during_cache_writes_leaves_a_sound_cache(tmp_path: Path) -> None:
    cache = tmp_path / "critiques.sqlite"
    bodies = distinct_requests(600, seed=2)
    answered: list[int] = []
    with serve_process(tmp_path, "--cache-path", str(cache)) as s:

        async def burst() -> None:
            queue = list(enumerate(bodies))
            async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:

                async def worker() -> None:
                    while queue:
                        i, body = queue.pop()
                        try:
                            r = await c.post("/v1/critiques", json=body)
                        except httpx.TransportError:
                            return
                        if r.status_code == 200:
                            answered.append(i)
                        if len(answered) == 80:
                            s.proc.kill()  # SIGKILL, with ~16 critiques in flight and cache writes under way

                await asyncio.gather(*(worker() for _ in range(16)))

        asyncio.run(burst())
        assert s.proc.wait(timeout=10) == -signal.SIGKILL
    assert 80 <= len(answered) < len(bodies)
    db = sqlite3.connect(cache)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = db.execute("SELECT body FROM critiques").fetchall()
    db.close()
    assert len(rows) >= len(answered)  # every answered critique was committed before it was answered
    for (body,) in rows:
        Critique.model_validate_json(body)  # no torn entry
    with serve_process(tmp_path, "--cache-path", str(cache)) as again:
        for i in answered[:3]:
            repeated = httpx.post(f"{again.url}/v1/critiques", json={**bodies[i], "request_id": "again"}).json()
            assert repeated["meta"]["cached"] is True and repeated["request_id"] == "again"
