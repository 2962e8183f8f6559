"""`make demo` (until the trainer lands): start `stepalign-critic serve` with the checker engine, ask it for a
critique of a wrong student solution over HTTP, print it readably, and stop the server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile

PROBLEM = "Start with 37. Add 48. Subtract 19. Multiply by 2. What is the result?"
SOLUTION = (
    "<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 67</step_2>\n<step_3>67 * 2 = 134</step_3>\n"
    "<answer>\\boxed{134}</answer>"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ask(url: str) -> int:
    from critic_service.cli import format_critique
    from shared.client import CriticClient, CriticError
    from shared.schemas import CritiqueRequest

    async with CriticClient(url) as client:
        for _ in range(150):
            with contextlib.suppress(CriticError):
                await client.ready()
                break
            await asyncio.sleep(0.2)
        else:
            print("the critic did not become ready in 30 s", file=sys.stderr)
            return 1
        info = await client.info()
        print(f"critic at {url}: engine {info.engine} ({info.model}), prompt {info.prompt_version}\n")
        print("Problem:", PROBLEM)
        print("Student solution:\n  " + SOLUTION.replace("\n", "\n  ") + "\n")
        critique = await client.critique(
            CritiqueRequest(problem=PROBLEM, reference_answer="132", student_solution=SOLUTION)
        )
    print(format_critique(critique))
    print("\nTeacher context (feedback):\n  " + critique.feedback.replace("\n", "\n  "))
    return 0


def main() -> int:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "critic.log")
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "critic_service.cli",
                    "serve",
                    "--engine",
                    "checker",
                    "--port",
                    str(port),
                    "--no-cache",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        print(f"started stepalign-critic serve (pid {server.pid}) on {url}")
        try:
            code = asyncio.run(_ask(url))
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            print("\nstopped the critic")
        if code:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                print(f.read()[-3000:], file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
