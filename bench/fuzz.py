"""Fuzz the critic service with schemathesis against its own /openapi.json: a real `stepalign-critic serve`
process (checker engine, an API key, a cache), every schemathesis check plus ours (a schema-valid request is
never rejected for its shape), a fixed seed, and enough examples for thousands of requests over every operation.

It passes when schemathesis reports no failure and no error and no response is a 5xx; it prints the requests
per operation and per status. The suite runs a short version of the same (tests/critic_service/test_contract.py).

Run: .venv/bin/python bench/fuzz.py [--examples 1000] [--seed 20261203] [--out bench-out/fuzz]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY = "bench-fuzz-key-0123456789"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1000, help="schemathesis --max-examples (per operation)")
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--out", type=Path, default=None, help="folder for the JSON and HAR reports")
    args = ap.parse_args()

    from tests.critic_service.fuzzing import run_schemathesis
    from tests.servers import serve_process

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        out = args.out or tmp / "reports"
        keys = tmp / "keys.txt"
        keys.write_text(f"fuzzer:{KEY}\n")
        with serve_process(tmp, "--api-keys-file", str(keys), "--cache-path", str(tmp / "cache.sqlite")) as server:
            t0 = time.perf_counter()
            result = run_schemathesis(server.url, out, examples=args.examples, seed=args.seed, key=KEY)
            wall = time.perf_counter() - t0
            leaked = KEY in server.output()
            tracebacks = server.output().count("Traceback")
    print(result.output[-5000:])
    print(result.summary())
    verdict = {
        "requests": result.requests,
        "wall_s": round(wall, 1),
        "operations": result.by_operation,
        "statuses": result.by_status,
        "server_errors": result.server_errors,
        "schemathesis_failures": result.failures,
        "schemathesis_errors": len(result.report.get("errors", [])),
        "server_tracebacks": tracebacks,
        "key_in_log": leaked,
    }
    print(json.dumps(verdict, indent=1))
    ok = result.exit_code == 0 and not result.failures and result.server_errors == 0 and not leaked
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
