"""Run real servers for tests: a `stepalign-critic serve` process (the real one, or `slow_serve` with a test-only
engine), or an app on a uvicorn thread, or an in-process TestClient that waits for the engine to load."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from shared.local_critic import LocalCritic, free_port, local_critic, wait_ready
from tests.conftest import REPO

__all__ = [
    "ServerProcess",
    "app_thread",
    "critic_process",
    "free_port",
    "ready_client",
    "serve_process",
    "wait_ready",
    "wait_until",
]


ServerProcess = LocalCritic


@contextlib.contextmanager
def critic_process(
    tmp: Path, *args: str, env: dict[str, str] | None = None, ready_timeout_s: float = 60.0
) -> Iterator[LocalCritic]:
    """`stepalign-critic serve ARGS` on a free loopback port, with its own cache file and log in `tmp`."""
    log = tmp / f"critic-{time.monotonic_ns()}.log"
    cache = {"STEPALIGN_CACHE_PATH": str(tmp / f"cache-{time.monotonic_ns()}.sqlite")}
    with local_critic(log, *args, env={**cache, **(env or {})}, ready_timeout_s=ready_timeout_s, cwd=REPO) as c:
        yield c


def wait_until(what: str, check: Any, timeout_s: float = 30.0, every_s: float = 0.05) -> Any:
    """Poll `check()` until it returns something truthy; that value, or AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if value := check():
                return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@contextlib.contextmanager
def serve_process(
    tmp: Path,
    *serve_args: str,
    engine_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    wait_for: str | None = "/readyz",
    timeout_s: float = 60.0,
) -> Iterator[LocalCritic]:
    """`stepalign-critic serve` on a free loopback port, in its own session (so nothing it starts can escape
    the cleanup). With `engine_args` it is `python -m tests.critic_service.slow_serve ENGINE_ARGS -- ...`.
    `wait_for`: the path that must answer 200 before the block runs (None: do not wait)."""
    port = free_port()
    args = ["--host", "127.0.0.1", "--port", str(port), *serve_args]
    if engine_args is None:
        cmd = [sys.executable, "-m", "critic_service.cli", "serve", *args]
    else:
        cmd = [sys.executable, "-m", "tests.critic_service.slow_serve", *engine_args, "--", *args]
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "STEPALIGN_CACHE_PATH": "null", **(env or {})},
            cwd=REPO,
            start_new_session=True,
        )
    server = LocalCritic(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    try:
        if wait_for is not None:

            def up() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"the server exited with {proc.returncode}:\n{server.output()[-3000:]}")
                return httpx.get(server.url + wait_for, timeout=2).status_code == 200

            wait_until(f"{server.url}{wait_for}", up, timeout_s)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything of its session still alive


@contextlib.contextmanager
def ready_client(app: Any, timeout_s: float = 60.0) -> Iterator[Any]:
    """A TestClient whose app has finished loading its engine (it loads in the background after startup)."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:

        def ready() -> bool:
            health = client.get("/readyz")
            if health.json()["status"] == "failing" and app.state.service.phase == "failed":
                raise AssertionError(f"the engine failed to load: {health.json()['detail']}")
            return health.status_code == 200

        wait_until("the engine to load", ready, timeout_s)
        yield client


@contextlib.contextmanager
def app_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn server on a background thread (for apps with injected engines)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 30)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)
