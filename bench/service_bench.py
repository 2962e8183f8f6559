"""Benchmark the critic service layer: HTTP, schema validation, segmentation, answer checks, critique parsing,
the validation rules and feedback assembly, with a zero-latency engine, so the numbers are the service's own cost.

The engine replays precomputed valid critiques (written by the checker engine, looked up by problem); every
request is a distinct arithmetic-chain solution, so nothing is served from a cache. The load generator is aiohttp
in this process; the server is a separate `uvicorn` process on 127.0.0.1.

Run: .venv/bin/python bench/service_bench.py [--requests 2000] [--concurrency 1 16 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _requests(count: int, seed: int) -> list[dict[str, object]]:
    from shared.arithmetic import format_number, random_chain

    rng = random.Random(seed)
    out = []
    for i in range(count):
        chain = random_chain(rng, length=(3, 6))
        steps = chain.solution_steps()
        if i % 2:  # half of them wrong at a random step
            k = rng.randrange(len(steps))
            a, rest = steps[k].rsplit("=", 1)
            steps[k] = f"{a}= {int(rest) + 1}"
        answer = steps[-1].rsplit("=", 1)[1].strip()
        text = "\n".join(f"<step_{j}>{s}</step_{j}>" for j, s in enumerate(steps, 1))
        text += f"\n<answer>\\boxed{{{answer}}}</answer>"
        out.append(
            {"problem": chain.problem_text(), "reference_answer": format_number(chain.answer), "student_solution": text}
        )
    return out


def serve(port: int, requests_file: Path) -> None:
    """The server process: the real app, with an engine that replays the checker's critiques instantly."""
    import uvicorn

    from critic_service.app import create_app
    from critic_service.engines.base import Generation, Job
    from critic_service.engines.checker import critique_chain
    from critic_service.settings import Settings
    from shared.arithmetic import parse_chain
    from shared.critique_text import render
    from shared.schemas import FeedbackMode
    from shared.steps import segment

    replies: dict[str, str] = {}
    for req in json.loads(requests_file.read_text()):
        chain = parse_chain(req["problem"])
        seg = segment(req["student_solution"])
        answer = req["student_solution"].rsplit("boxed{", 1)[1].split("}")[0]
        replies[req["problem"] + req["student_solution"]] = render(
            critique_chain(chain, [s.text for s in seg.steps], answer, mode=FeedbackMode.splice)
        )

    class ReplayEngine:
        name = "replay"
        model = "zero-latency"

        async def start(self) -> None: ...

        async def ready(self) -> bool:
            return True

        async def close(self) -> None: ...

        async def generate(self, job: Job) -> Generation:
            return Generation(text=replies[job.request.problem + (job.request.student_solution or "")])

    settings = Settings(cache_path=None, max_concurrency=256, port=port, log_level="warning")
    uvicorn.run(
        create_app(settings, engine=ReplayEngine()),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


async def _load(url: str, bodies: list[dict[str, object]], concurrency: int) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    failures = 0
    queue = list(bodies)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            async with session.post(f"{url}/v1/critiques", json=body) as r:
                await r.read()
                if r.status != 200:
                    failures += 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "failures": failures,
        "critiques_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(1e3 * statistics.median(latencies), 2),
        "p99_ms": round(1e3 * latencies[int(0.99 * (len(latencies) - 1))], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--requests-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.requests_file)
        return

    import httpx

    from tests.servers import free_port, wait_ready

    levels = args.concurrency
    bodies = _requests(args.requests * len(levels) + 50, seed=0)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"stepalign-bench-{os.getpid()}.json"
    tmp.write_text(json.dumps(bodies))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--requests-file", str(tmp)], cwd=ROOT, env=os.environ
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 120, proc)
        assert httpx.post(f"{url}/v1/critiques", json=bodies[0]).status_code == 200
        asyncio.run(_load(url, bodies[1:50], 8))  # warm-up
        rows = []
        for i, c in enumerate(levels):
            chunk = bodies[50 + i * args.requests : 50 + (i + 1) * args.requests]
            rows.append(asyncio.run(_load(url, chunk, c)))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        tmp.unlink(missing_ok=True)
    print(f"{'clients':>8} {'critiques/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'failures':>9}")
    for r in rows:
        print(f"{r['concurrency']:>8} {r['critiques_per_s']:>12} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['failures']:>9}")


if __name__ == "__main__":
    main()
