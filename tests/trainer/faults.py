"""Fault injection in front of a real critic: a proxy that delays, answers 503/429 with Retry-After, or
forwards; and a 'replica' that accepts connections and drops them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers import app_thread


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.delay_s = 0.0
        self.fail_next = 0
        self.fail_status = 503
        self.retry_after = "1"
        self.hits = 0
        self.forwarded = 0
        self._http: httpx.AsyncClient | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])

    async def handle(self, request: Request) -> Response:
        if request.url.path == "/readyz":
            return JSONResponse({"status": "ok", "detail": ""})
        self.hits += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next > 0:
            self.fail_next -= 1
            body = {"error": {"code": "overloaded", "message": "injected fault", "details": []}}
            return JSONResponse(body, status_code=self.fail_status, headers={"Retry-After": self.retry_after})
        if self._http is None:  # one client for the proxy's lifetime, made on its own event loop
            self._http = httpx.AsyncClient(base_url=self.upstream, timeout=60)
        r = await self._http.request(
            request.method, request.url.path, content=await request.body(), headers={"content-type": "application/json"}
        )
        self.forwarded += 1
        return Response(r.content, status_code=r.status_code, media_type="application/json")


@contextlib.contextmanager
def fault_proxy(upstream: str) -> Iterator[tuple[str, FaultProxy]]:
    proxy = FaultProxy(upstream)
    with app_thread(proxy.app) as url:
        yield url, proxy


@contextlib.contextmanager
def dropping_replica() -> Iterator[str]:
    """Accepts TCP connections and closes them at once, without a response."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with contextlib.suppress(OSError):
                conn.recv(1024)
            conn.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(timeout=2)
        srv.close()
