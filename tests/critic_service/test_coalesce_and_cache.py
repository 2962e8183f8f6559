"""Identical concurrent requests share one engine call; the cache is bounded (LRU), upgrades an old file, and
`Cache-Control: no-cache` bypasses it."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import httpx

from critic_service.app import create_app
from critic_service.cache import CritiqueCache
from critic_service.settings import Settings
from shared.schemas import Critique
from tests.critic_service.fakes import VALID_D, ScriptedEngine
from tests.critic_service.test_server import REQUEST
from tests.servers import app_thread, ready_client


def _settings(**kw: object) -> Settings:
    return Settings(answer_workers=1, **{"cache_path": None, **kw})  # type: ignore[arg-type]


def test_identical_concurrent_requests_share_one_engine_call() -> None:
    engine = ScriptedEngine([VALID_D], delay_s=1.0)
    with app_thread(create_app(_settings(), engine=engine)) as url:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                same = [c.post("/v1/critiques", json={**REQUEST, "request_id": f"r{i}"}) for i in range(8)]
                other = c.post("/v1/critiques", json={**REQUEST, "reference_solution": "another input"})
                return list(await asyncio.gather(*same, other))

        responses = asyncio.run(burst())
        metrics = httpx.get(f"{url}/metrics").text
    assert [r.status_code for r in responses] == [200] * 9
    assert engine.calls == 2  # one for the 8 identical requests, one for the different one
    bodies = [r.json() for r in responses[:8]]
    assert [b["request_id"] for b in bodies] == [f"r{i}" for i in range(8)]  # each caller's own
    assert len({b["id"] for b in bodies}) == 8 and len({b["feedback"] for b in bodies}) == 1
    assert re.search(r"^stepalign_coalesced_total 7\.0$", metrics, re.M)


def test_no_cache_header_bypasses_the_cache(tmp_path: Path) -> None:
    engine = ScriptedEngine([VALID_D])
    with ready_client(create_app(_settings(cache_path=tmp_path / "c.sqlite"), engine=engine)) as client:
        first = client.post("/v1/critiques", json=REQUEST).json()
        second = client.post("/v1/critiques", json=REQUEST).json()
        fresh = client.post("/v1/critiques", json=REQUEST, headers={"Cache-Control": "no-cache"}).json()
        third = client.post("/v1/critiques", json=REQUEST).json()
    assert [x["meta"]["cached"] for x in (first, second, fresh, third)] == [False, True, False, True]
    assert engine.calls == 2


def _critique() -> Critique:
    with ready_client(create_app(_settings(), engine=ScriptedEngine([VALID_D]))) as client:
        return Critique.model_validate(client.post("/v1/critiques", json=REQUEST).json())


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(tmp_path: Path) -> None:
    critique = _critique()
    path = tmp_path / "bounded.sqlite"

    async def fill() -> None:
        cache = CritiqueCache(path, max_entries=10)
        for i in range(10):
            await cache.put(f"k{i}", critique)
        assert await cache.get("k0") is not None  # k0 is now the most recently used
        for i in range(10, 15):
            await cache.put(f"k{i}", critique)
        assert len(cache) <= 10 and cache.evictions >= 5
        assert await cache.get("k0") is not None and await cache.get("k1") is None
        cache.close()

    asyncio.run(fill())
    reopened = CritiqueCache(path, max_entries=10)
    assert len(reopened) <= 10 and asyncio.run(reopened.get("k14")) is not None
    reopened.close()


def test_a_cache_file_from_before_the_bound_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE critiques (key TEXT PRIMARY KEY, created REAL, body TEXT)")
    db.execute("INSERT INTO critiques VALUES ('old', 1.0, ?)", (_critique().model_dump_json(),))
    db.execute("INSERT INTO critiques VALUES ('torn', 2.0, '{\"id\": ')")
    db.commit()
    db.close()
    cache = CritiqueCache(path, max_entries=10)
    assert asyncio.run(cache.get("old")) is not None
    assert asyncio.run(cache.get("torn")) is None and len(cache) == 1  # an unreadable row is dropped
    cache.close()
