"""`make demo` (until the trainer lands): start `stepalign-critic serve` with the checker engine, ask it for a
critique of a wrong student solution over HTTP, print it readably, and stop the server."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

PROBLEM = "Start with 37. Add 48. Subtract 19. Multiply by 2. What is the result?"
SOLUTION = (
    "<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 67</step_2>\n<step_3>67 * 2 = 134</step_3>\n"
    "<answer>\\boxed{134}</answer>"
)


async def _ask(url: str) -> int:
    from critic_service.cli import format_critique
    from shared.client import CriticClient, CriticError
    from shared.schemas import CritiqueRequest

    async with CriticClient(url) as client:
        try:
            info = await client.info()
        except CriticError as exc:
            print(f"the critic did not answer: {exc}", file=sys.stderr)
            return 1
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
    from shared.local_critic import local_critic

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "critic.log"
        with local_critic(log, "--engine", "checker", "--no-cache") as critic:
            print(f"started stepalign-critic serve (pid {critic.proc.pid}) on {critic.url}")
            code = asyncio.run(_ask(critic.url))
            if code:
                print(critic.output()[-3000:], file=sys.stderr)
        print("\nstopped the critic")
    return code


if __name__ == "__main__":
    sys.exit(main())
