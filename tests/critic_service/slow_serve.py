"""`python -m tests.critic_service.slow_serve [ENGINE OPTIONS] -- [SERVE ARGS]`: the real `stepalign-critic serve`
(settings, logging, uvicorn, drain, exit codes) with a test-only engine that stands in for a large model.

The engine loads for `--load-s` seconds (or fails to, with `--fail-load`), answers after `--latency-s` seconds
(a request whose `request_id` is `sleep=S` waits S seconds instead), reports `--tokens` generated tokens per
critique, and, with `--child`, owns a child process the way vLLM owns its engine-core process. Its critiques are
the checker engine's, so they pass the service's validation unchanged. Only tests and bench scripts use it.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys

from critic_service.engines.base import Generation, Job
from critic_service.engines.checker import CheckerEngine
from shared.schemas import Usage


class SlowEngine:
    name = "slow"
    model = "slow-checker"

    def __init__(
        self, load_s: float, latency_s: float, fail_load: str | None = None, child: bool = False, tokens: int = 0
    ) -> None:
        self.load_s = load_s
        self.latency_s = latency_s
        self.fail_load = fail_load
        self.child = child
        self.tokens = tokens
        self._checker = CheckerEngine()
        self._proc: subprocess.Popen[bytes] | None = None
        self._loaded = False

    async def start(self) -> None:
        if self.child:
            self._proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            print(f"slow engine child pid {self._proc.pid}", file=sys.stderr, flush=True)
        await asyncio.sleep(self.load_s)
        if self.fail_load:
            raise RuntimeError(self.fail_load)
        self._loaded = True

    async def ready(self) -> bool:
        return self._loaded

    async def generate(self, job: Job) -> Generation:
        rid = job.request.request_id or ""
        await asyncio.sleep(float(rid[6:]) if rid.startswith("sleep=") else self.latency_s)
        text = (await self._checker.generate(job)).text
        return Generation(text=text, usage=Usage(prompt_tokens=10, completion_tokens=self.tokens))

    async def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--load-s", type=float, default=0.0)
    ap.add_argument("--latency-s", type=float, default=0.0)
    ap.add_argument("--fail-load")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--tokens", type=int, default=0)
    opts = ap.parse_args(argv[:split])
    engine = SlowEngine(opts.load_s, opts.latency_s, opts.fail_load, opts.child, opts.tokens)
    from critic_service.cli import main as cli

    return cli(["serve", *argv[split + 1 :]], engine=engine)


if __name__ == "__main__":
    sys.exit(main())
