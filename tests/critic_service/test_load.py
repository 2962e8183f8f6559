"""A short load run against a real server process whose engine takes 200 ms per critique and runs at most 16 at
once: 200 concurrent clients get only 200s and 429/503 with Retry-After, the server's memory stays flat, and a
key over its quota does not slow another key down. (bench/load.py is the 60-second version, with figures.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psutil

from tests.critic_service.bodies import distinct_requests
from tests.critic_service.loadgen import run_load
from tests.servers import serve_process

KEYS = {"heavy": "heavy-key-1", "light": "light-key-2"}


def test_200_clients_get_answers_or_clean_refusals(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("".join(f"{n}:{k}\n" for n, k in KEYS.items()))
    args = ["--api-keys-file", str(keys), "--no-cache", "--max-concurrency", "16", "--max-queue", "48"]
    args += [
        "--key-rate-limits",
        json.dumps({"heavy": {"requests_per_min": 30, "burst": 10}}),
        "--log-level",
        "warning",
    ]
    bodies = distinct_requests(3000, seed=5)
    with serve_process(tmp_path, *args, engine_args=["--latency-s", "0.2"]) as s:
        server = psutil.Process(s.proc.pid)
        asyncio.run(run_load(s.url, {"light": 200}, 2.0, bodies, keys=KEYS))  # warm-up
        rss_before = server.memory_info().rss
        flood = asyncio.run(run_load(s.url, {"light": 200}, 8.0, bodies, keys=KEYS))["light"]
        mixed = asyncio.run(run_load(s.url, {"heavy": 190, "light": 10}, 6.0, bodies, keys=KEYS))
        rss_after = server.memory_info().rss
    print("200 clients:", flood.summary())
    print("heavy over quota:", mixed["heavy"].summary(), "light:", mixed["light"].summary())
    assert set(flood.statuses) <= {200, 429, 503} and flood.statuses[503] > 0 and flood.ok > 200
    assert flood.refusals_without_retry_after == 0
    assert (rss_after - rss_before) / 2**20 < 50
    heavy, light = mixed["heavy"], mixed["light"]
    assert set(heavy.statuses) <= {200, 429} and heavy.statuses[429] > 100 and heavy.ok <= 10 + 4
    assert heavy.refusals_without_retry_after == 0
    assert set(light.statuses) == {200} and light.ok > 50  # unaffected by the other key's quota
