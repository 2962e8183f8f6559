"""Run real servers for tests: a `stepalign-critic serve` process, or an app on a uvicorn thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.local_critic import LocalCritic, free_port, local_critic, wait_ready
from tests.conftest import REPO

__all__ = ["ServerProcess", "app_thread", "critic_process", "free_port", "wait_ready"]


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
