"""Run real servers for tests: a `stepalign-critic serve` process, or an app on a uvicorn thread."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text() if log else ''}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s} s:\n{log.read_text() if log else ''}")


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def critic_process(
    tmp: Path, *args: str, env: dict[str, str] | None = None, ready_timeout_s: float = 60.0
) -> Iterator[ServerProcess]:
    """`stepalign-critic serve ARGS` on a free loopback port, stopped (SIGTERM, then SIGKILL) afterwards."""
    port = free_port()
    log = tmp / f"critic-{port}.log"
    full_env = {**os.environ, "STEPALIGN_CACHE_PATH": str(tmp / f"cache-{port}.sqlite"), **(env or {})}
    cmd = [sys.executable, "-m", "critic_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, ready_timeout_s, proc, log)
        yield ServerProcess(url=url, proc=proc, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
