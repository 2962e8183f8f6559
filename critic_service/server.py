"""Run the service under uvicorn the way `stepalign-critic serve` does: refuse an open bind without keys, bind
before the engine loads, drain on SIGTERM, and leave no child process behind.

Exit status: 0 after a graceful shutdown (SIGTERM/SIGINT); 2 when the configuration is refused (bad keys, an
open bind without keys); 3 when the engine failed to load and `exit_on_load_failure` is set.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import signal
import socket
import threading
from collections.abc import Iterator

import uvicorn

from critic_service.app import create_app
from critic_service.auth import KeyFormatError
from critic_service.engines.base import Engine
from critic_service.logs import LEVELS, configure_logging
from critic_service.settings import Settings
from critic_service.state import ServiceState

log = logging.getLogger("stepalign.critic")

EXIT_OK = 0
EXIT_REFUSED = 2
EXIT_LOAD_FAILURE = 3


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def bind_refusal(settings: Settings, key_count: int) -> str | None:
    """Why binding `settings.host` is refused, or None when it is allowed."""
    if key_count or settings.allow_unauthenticated or is_loopback(settings.host):
        return None
    return (
        f"refusing to serve on {settings.host} without API keys: anyone who can reach it could use the critic. "
        "Give keys (--api-keys-file, STEPALIGN_API_KEYS) or pass --allow-unauthenticated."
    )


class _DrainingServer(uvicorn.Server):
    """uvicorn's graceful shutdown (stop accepting, wait for in-flight requests, then the lifespan's shutdown,
    which stops the engine), with the app told when the drain starts so it can answer what is cut off."""

    def __init__(self, config: uvicorn.Config, st: ServiceState) -> None:
        super().__init__(config)
        self.st = st

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, except that a SIGTERM/SIGINT is not raised again after the shutdown (which would kill the
        process before it could stop leftover children): the process exits normally, with status 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        s = self.st.settings
        log.info(
            "shutting down: no new connections; %d critiques in flight, %d waiting, get up to %.0f s to finish",
            self.st.admission.running,
            self.st.admission.waiting,
            s.drain_timeout_s,
        )
        self.st.drain.begin(s.drain_timeout_s)
        await super().shutdown(sockets)


def reap_children() -> None:
    """Stop any child process still alive (an engine whose load was cut short by a shutdown, say)."""
    try:
        import psutil
    except ImportError:
        return
    from multiprocessing import resource_tracker

    # multiprocessing's resource tracker ignores SIGTERM and exits by itself once this process has gone.
    tracker = getattr(getattr(resource_tracker, "_resource_tracker", None), "_pid", None)
    children = [c for c in psutil.Process().children(recursive=True) if c.pid != tracker]
    if not children:
        return
    log.info("stopping %d leftover child process(es): %s", len(children), ", ".join(str(c.pid) for c in children))
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=5)


def run(settings: Settings, *, engine: Engine | None = None) -> int:
    """Serve until told to stop; the process's exit status (see the module docstring)."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        keys = settings.named_keys()
    except (KeyFormatError, OSError) as exc:
        log.error("API keys: %s", exc)
        return EXIT_REFUSED
    if (refusal := bind_refusal(settings, len(keys))) is not None:
        log.error(refusal)
        return EXIT_REFUSED
    log.info("settings: %s", json.dumps(settings.public_dump()))
    if keys:
        log.info("auth on: %d API key(s): %s", len(keys), ", ".join(k.name for k in keys))
    else:
        log.warning("auth off: no API keys configured (anyone who can reach %s may use the critic)", settings.host)
    app = create_app(settings, engine=engine)
    st: ServiceState = app.state.service
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep ours (configure_logging)
        log_level=LEVELS[settings.log_level],
        access_log=False,  # replaced by critic_service.middleware.AccessLog (JSON, with the key's name)
        # uvicorn's own cut-off comes a little after ours, so cut-off critiques still get their 503 answered.
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s) + 2,
        lifespan="on",
    )
    server = _DrainingServer(config, st)
    failed = False

    def stop_after_load_failure() -> None:
        nonlocal failed
        failed = True
        server.should_exit = True

    st.on_load_failure = stop_after_load_failure
    try:
        server.run()
    finally:
        reap_children()
    if failed:
        log.error("exiting with status %d: the engine failed to load (%s)", EXIT_LOAD_FAILURE, st.load_error)
        return EXIT_LOAD_FAILURE
    log.info("stopped")
    return EXIT_OK
