"""Fault injection in front of a real critic: a proxy that delays, answers 503/429 with Retry-After, or
forwards; and a 'replica' that accepts connections and drops them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
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
        self.fail_code = "overloaded"
        self.retry_after: str | None = "1"
        self.not_ready_until = 0.0  # time.monotonic() before which the critic is still "loading"
        self.ready_polls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.hits = 0
        self.forwarded = 0
        self._http: httpx.AsyncClient | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])

    async def handle(self, request: Request) -> Response:
        loading = time.monotonic() < self.not_ready_until
        if request.url.path == "/readyz":
            self.ready_polls += 1
            if loading:
                body = {"status": "loading", "detail": "the engine is not ready yet"}
                return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
            return JSONResponse({"status": "ok", "detail": ""})
        self.hits += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, loading)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: Request, loading: bool) -> Response:
        if loading:
            body = {"error": {"code": "not_ready", "message": "the engine is still loading", "details": []}}
            return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next > 0:
            self.fail_next -= 1
            body = {"error": {"code": self.fail_code, "message": "injected fault", "details": []}}
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
            return JSONResponse(body, status_code=self.fail_status, headers=headers)
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
