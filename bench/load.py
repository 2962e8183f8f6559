"""Load the critic service the way a team does: 200 concurrent clients for 60 s against a real
`stepalign-critic serve` process whose engine takes 200 ms per critique and runs at most 16 at once (the
test-only slow engine of tests/critic_service/slow_serve.py: the checker's critiques, delayed).

Phase 1: all 200 clients with one key. Phase 2: two keys, "heavy" (190 clients) over its quota of 60
critiques/min (burst 10) and "light" (10 clients). Every answer must be a 200, or a 429/503 with Retry-After;
the server's RSS may grow by less than 50 MB; "light" must get only 200s. Clients wait what Retry-After says
(at most 2 s).
The load generator is aiohttp, in this process (an httpx client would be the bottleneck).

Run: .venv/bin/python bench/load.py [--seconds 60] [--clients 200] [--latency-s 0.2] [--max-concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEYS = {"heavy": "bench-heavy-key", "light": "bench-light-key"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--light-clients", type=int, default=10)
    ap.add_argument("--latency-s", type=float, default=0.2)
    ap.add_argument("--max-concurrency", type=int, default=16)
    ap.add_argument("--max-queue", type=int, default=48)
    ap.add_argument("--heavy-quota", type=int, default=60, help="heavy key's critiques per minute")
    args = ap.parse_args()

    import psutil

    from tests.critic_service.bodies import distinct_requests
    from tests.critic_service.loadgen import run_load
    from tests.servers import serve_process

    bodies = distinct_requests(20_000, seed=11)
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keys = tmp / "keys.txt"
        keys.write_text("".join(f"{n}:{k}\n" for n, k in KEYS.items()))
        serve = ["--api-keys-file", str(keys), "--no-cache", "--log-level", "warning"]
        serve += ["--max-concurrency", str(args.max_concurrency), "--max-queue", str(args.max_queue)]
        serve += ["--key-rate-limits", json.dumps({"heavy": {"requests_per_min": args.heavy_quota, "burst": 10}})]
        with serve_process(tmp, *serve, engine_args=["--latency-s", str(args.latency_s)]) as server:
            proc = psutil.Process(server.proc.pid)
            asyncio.run(run_load(server.url, {"light": args.clients}, 5.0, bodies, keys=KEYS))  # warm-up
            rss0 = proc.memory_info().rss
            flood = asyncio.run(run_load(server.url, {"light": args.clients}, args.seconds, bodies, keys=KEYS))
            rss1 = proc.memory_info().rss
            heavy_clients = args.clients - args.light_clients
            mixed = asyncio.run(
                run_load(
                    server.url, {"heavy": heavy_clients, "light": args.light_clients}, args.seconds, bodies, keys=KEYS
                )
            )
            rss2 = proc.memory_info().rss
    capacity = args.max_concurrency / args.latency_s
    report["setup"] = {**vars(args), "engine_capacity_per_s": capacity}
    report["phase1_one_key"] = flood["light"].summary()
    report["phase2_heavy_over_quota"] = mixed["heavy"].summary()
    report["phase2_light"] = mixed["light"].summary()
    report["rss_mb"] = {"start": round(rss0 / 2**20, 1), "after_phase1": round(rss1 / 2**20, 1)}
    report["rss_mb"]["after_phase2"] = round(rss2 / 2**20, 1)  # type: ignore[index]
    report["rss_growth_mb"] = round((max(rss1, rss2) - rss0) / 2**20, 1)
    print(json.dumps(report, indent=1))
    results = [flood["light"], mixed["heavy"], mixed["light"]]
    ok = all(set(r.statuses) <= {200, 429, 503} and r.refusals_without_retry_after == 0 for r in results)
    ok &= set(mixed["light"].statuses) == {200}
    ok &= (max(rss1, rss2) - rss0) / 2**20 < 50
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
