"""Team keys: named keys, every non-probe route behind them, per-key quotas and usage, keys in no log line, and
no open bind without keys."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from critic_service.app import create_app
from critic_service.auth import KeyFormatError, parse_key_entries
from critic_service.ratelimit import RateLimit, RateLimiter
from critic_service.server import bind_refusal
from critic_service.settings import Settings
from tests.conftest import REPO
from tests.critic_service.fakes import VALID_D, ScriptedEngine
from tests.critic_service.test_server import REQUEST
from tests.servers import ServerProcess, free_port, ready_client, serve_process

SECRETS = {"alice": "alice-secret-1111", "bob": "bob-secret-2222", "carol": "carol-secret-3333"}
BARE = "bare-secret-4444"
WRONG = "not-a-key-5555"
PROBES = {"/healthz", "/readyz"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("keyed")
    keys = tmp / "keys.txt"
    keys.write_text("# team keys\n" + "".join(f"{n}:{k}\n" for n, k in SECRETS.items()) + f"\n{BARE}\n")
    args = ["--api-keys-file", str(keys), "--no-metrics-public", "--no-docs-public", "--log-format", "json"]
    args += ["--key-rate-limits", json.dumps({"bob": {"requests_per_min": 3}})]
    with serve_process(tmp, *args) as s:
        yield s


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_key_entries_are_named_and_checked() -> None:
    keys = parse_key_entries([("f:1", "alice:k1"), ("f:2", "k2"), ("f:3", " bob : k:3 ")])
    assert [(k.name, k.secret) for k in keys] == [("alice", "k1"), ("key-2", "k2"), ("bob", "k:3")]
    assert "k1" not in repr(keys)
    for entries, fragment in [
        ([("f:1", "a:x"), ("f:2", "a:y")], "key name 'a' is used twice"),
        ([("f:1", "a:same-secret"), ("f:2", "b:same-secret")], "repeats the key"),
        ([("f:7", "bad name:the-secret")], "f:7: a key's name must match"),
        ([("f:1", "a:")], "key 'a' is empty"),
    ]:
        with pytest.raises(KeyFormatError, match=fragment) as info:
            parse_key_entries(entries)
        assert "secret" not in str(info.value)


def test_the_startup_log_names_every_key(keyed: ServerProcess) -> None:
    assert "auth on: 4 API key(s): alice, bob, carol, key-4" in keyed.output()


def test_every_non_probe_route_needs_a_key(keyed: ServerProcess) -> None:
    app = create_app(Settings(api_keys=["x:y"], cache_path=None))
    routes = [(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in r.methods]
    checked = set()
    for method, path in routes:
        if path in PROBES:
            assert httpx.request(method, keyed.url + path).status_code == 200
            continue
        url = keyed.url + path.replace("{name}", "swagger-ui.css")
        body = None if method != "POST" else json.dumps({"items": [REQUEST]} if "batch" in path else REQUEST)
        for headers in ({}, _bearer(WRONG), {"Authorization": WRONG}):
            r = httpx.request(method, url, content=body, headers={"Content-Type": "application/json", **headers})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
        ok = httpx.request(method, url, content=body, headers={"Content-Type": "application/json", **_bearer(BARE)})
        assert ok.status_code == 200, (method, path, ok.text)
        checked.add(path)
    assert checked == {
        "/v1/info",
        "/v1/critiques",
        "/v1/critiques/batch",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/assets/{name}",
    }
    log = keyed.output()
    assert not [s for s in [*SECRETS.values(), BARE, WRONG] if s in log]


def test_usage_per_key_in_metrics_and_in_the_request_log(keyed: ServerProcess) -> None:
    assert httpx.post(f"{keyed.url}/v1/critiques", json=REQUEST, headers=_bearer(SECRETS["alice"])).status_code == 200
    bad = {**REQUEST, "problem": "Integrate x."}
    assert httpx.post(f"{keyed.url}/v1/critiques", json=bad, headers=_bearer(SECRETS["carol"])).status_code == 422
    metrics = httpx.get(f"{keyed.url}/metrics", headers=_bearer(SECRETS["alice"])).text
    assert re.search(r'^stepalign_key_critiques_total\{key="alice"\} [1-9]', metrics, re.M)
    assert 'stepalign_key_errors_total{code="unsupported_problem",key="carol"} 1.0' in metrics
    assert 'stepalign_key_errors_total{code="unauthorized",key="none"}' in metrics
    lines = [json.loads(x) for x in keyed.output().splitlines() if x.startswith('{"ts"') and '"method"' in x]
    mine = [x for x in lines if x["path"] == "/v1/critiques" and x["key"] in ("alice", "carol")]
    assert {(x["method"], x["status"], x["key"]) for x in mine} >= {("POST", 200, "alice"), ("POST", 422, "carol")}
    assert all(isinstance(x["latency_ms"], float) for x in mine)


def test_a_key_over_its_quota_does_not_affect_another(keyed: ServerProcess) -> None:
    bob = [httpx.post(f"{keyed.url}/v1/critiques", json=REQUEST, headers=_bearer(SECRETS["bob"])) for _ in range(5)]
    alice = [httpx.post(f"{keyed.url}/v1/critiques", json=REQUEST, headers=_bearer(SECRETS["alice"])) for _ in range(5)]
    assert [r.status_code for r in bob] == [200, 200, 200, 429, 429]
    refused = bob[3].json()["error"]
    assert refused["code"] == "rate_limited"
    assert "'bob' is over its limit of 3 critiques per minute" in refused["message"]
    assert 1 <= int(bob[3].headers["retry-after"]) <= 20
    assert [r.status_code for r in alice] == [200] * 5
    batch = {"items": [REQUEST] * 4}
    r = httpx.post(f"{keyed.url}/v1/critiques/batch", json=batch, headers=_bearer(SECRETS["bob"]))
    assert (
        r.status_code == 429
        and "a batch of 4 items exceeds the limit of key 'bob': 3 critiques at once" in r.json()["error"]["message"]
    )


def test_generated_tokens_per_minute() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimit(tokens_per_min=120), clock=lambda: now[0])
    for _ in range(3):
        limiter.admit("a")
        limiter.charge("a", 50)  # 120 -> 70 -> 20 -> -30: in debt after the third
    with pytest.raises(Exception, match="over its limit of 120 generated tokens") as info:
        limiter.admit("a")
    assert info.value.retry_after == 15  # type: ignore[attr-defined]  # 30 tokens at 2 tokens/s
    limiter.admit("b")  # another key has its own bucket
    now[0] = 15.0
    limiter.admit("a")  # the debt has been paid back


def test_token_quota_through_the_service() -> None:
    engine = ScriptedEngine([VALID_D])  # 50 completion tokens per critique
    settings = Settings(
        cache_path=None, answer_workers=1, api_keys=["a:key-a", "b:key-b"], rate_limit=RateLimit(tokens_per_min=120)
    )
    with ready_client(create_app(settings, engine=engine)) as client:
        # Distinct requests: identical ones would share one engine call (and be charged once).
        bodies = [{**REQUEST, "reference_solution": f"worked solution {i}"} for i in range(4)]
        codes = [client.post("/v1/critiques", json=b, headers=_bearer("key-a")).status_code for b in bodies]
        assert codes == [200, 200, 200, 429]
        assert client.post("/v1/critiques", json=REQUEST, headers=_bearer("key-b")).status_code == 200


def test_open_bind_without_keys_is_refused(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "critic_service.cli", "serve", "--host", "0.0.0.0", "--port", str(free_port())]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60, env={"PATH": "/usr/bin"})
    assert out.returncode == 2
    assert "refusing to serve on 0.0.0.0 without API keys" in out.stderr and "--allow-unauthenticated" in out.stderr
    for host in ("127.0.0.1", "::1", "localhost"):
        assert bind_refusal(Settings(host=host), 0) is None
    assert bind_refusal(Settings(host="0.0.0.0"), 1) is None
    assert bind_refusal(Settings(host="0.0.0.0", allow_unauthenticated=True), 0) is None
    assert bind_refusal(Settings(host="critic.internal"), 0) is not None
