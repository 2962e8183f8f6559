"""ASGI middleware: a request-body size limit (FastAPI does not wire Starlette's), answered with the API's
error body; and the request log, one JSON line per request."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from critic_service.errors import PayloadTooLarge

access_log = logging.getLogger("stepalign.access")
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})  # logged at DEBUG: orchestrators poll them constantly


class BodyLimit:
    """Rejects bodies over `max_bytes` with 413, by Content-Length up front or while the body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        err = PayloadTooLarge(
            f"request body is larger than {self.max_bytes} bytes", details=[{"max_body_bytes": self.max_bytes}]
        )
        body = json.dumps(err.body().model_dump(mode="json")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)
                return
        # Read the whole body first (it is small by construction), so an oversized one is refused before the
        # app sees any of it and the 413 is always the first and only response.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class AccessLog:
    """One JSON line per request: time, method, path, status, latency and the caller's key *name* (set by the
    auth dependency; null when no key was recognised). Never the key, the query string or the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        status = 500  # if the app dies before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope.get("path", "")
            level = logging.DEBUG if path in PROBES and status < 400 else logging.INFO
            if access_log.isEnabledFor(level):
                client = scope.get("client")
                line = {
                    "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "method": scope.get("method"),
                    "path": path,
                    "status": status,
                    "latency_ms": round((time.perf_counter() - started) * 1e3, 2),
                    "key": state.get("key_name"),
                    "client": client[0] if client else None,
                }
                access_log.log(level, json.dumps(line))
