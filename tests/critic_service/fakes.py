"""Fake engines for fault injection: scripted outputs, failures, delays, and a record of what they were asked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from critic_service.engines.base import Generation, Job
from shared.schemas import Usage

VALID_D = """<think>The student subtracted wrongly in step 2.</think>
Case: D
Pivotal step: 2
Summary:
Step 1: Correct
Step 2: Incorrect -- 85 - 19 is 66
Step 3: Incorrect -- follows from step 2
Correction:
<step_2>85 - 19 = 66</step_2>
<step_3>66 * 2 = 132</step_3>
<answer>\\boxed{132}</answer>"""

INVALID = "Case: D\nSummary:\nStep 1: Correct"  # no pivotal step, too few summary lines, no correction


class ScriptedEngine:
    """Returns `outputs` in turn (the last one repeats); counts calls and cancellations."""

    name = "fake"
    model = "scripted"

    def __init__(
        self, outputs: list[str], *, delay_s: float = 0.0, fail: Callable[[int], Exception | None] | None = None
    ) -> None:
        self.outputs = outputs
        self.delay_s = delay_s
        self.fail = fail
        self.calls = 0
        self.cancelled = 0
        self.running = 0
        self.jobs: list[Job] = []

    async def start(self) -> None:
        return None

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    async def generate(self, job: Job) -> Generation:
        self.calls += 1
        self.jobs.append(job)
        self.running += 1
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        if self.fail is not None and (exc := self.fail(self.calls)) is not None:
            raise exc
        text = self.outputs[min(self.calls, len(self.outputs)) - 1]
        return Generation(text=text, usage=Usage(prompt_tokens=100, completion_tokens=50, reasoning_tokens=10))
