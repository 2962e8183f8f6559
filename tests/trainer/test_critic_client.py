"""The trainer's critic client against a real local critic server with injected faults: the right retries
happen, nothing is lost, a step's critiques run concurrently, and the critique log survives a torn write."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.arithmetic import format_number, random_chain
from shared.client import CriticError, RetryPolicy
from shared.schemas import Critique, CritiqueRequest
from tests.servers import ServerProcess, critic_process, free_port
from tests.trainer.faults import dropping_replica, fault_proxy
from trainer.critic_client import CriticSettings, CritiqueLog, TrainerCritic
from trainer.outcomes import CriticUnavailable

FAST_RETRY = RetryPolicy(max_attempts=5, base_delay_s=0.05, max_delay_s=0.5, jitter=0.5)


@pytest.fixture(scope="module")
def critic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with critic_process(tmp_path_factory.mktemp("critic"), "--no-cache") as s:
        yield s


def requests(n: int, seed: int = 0) -> list[CritiqueRequest]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chain = random_chain(rng)
        steps = chain.solution_steps()
        text = "\n".join(f"<step_{i}>{s}</step_{i}>" for i, s in enumerate(steps, 1))
        out.append(
            CritiqueRequest(
                problem=chain.problem_text(),
                reference_answer=format_number(chain.answer),
                student_solution=text + f"\n<answer>\\boxed{{{format_number(chain.answer)}}}</answer>",
            )
        )
    return out


def _client(urls: list[str], tmp: Path, **kw: object) -> TrainerCritic:
    settings = CriticSettings(urls=urls, retry=kw.pop("retry", FAST_RETRY), connect_timeout_s=1.0, **kw)  # type: ignore[arg-type]
    return TrainerCritic(settings, tmp / "critiques.jsonl")


def test_retry_after_is_honoured_and_nothing_is_lost(critic: ServerProcess, tmp_path: Path) -> None:
    with fault_proxy(critic.url) as (url, proxy):
        proxy.fail_next = 2
        tc = _client([url], tmp_path)
        start = time.perf_counter()
        [got] = tc.critique_step(0, requests(1))
        elapsed = time.perf_counter() - start
        tc.close()
    assert isinstance(got, Critique) and got.case.value == "A"
    assert proxy.hits == 3 and proxy.forwarded == 1
    assert elapsed >= 2.0  # two Retry-After: 1 waits, though the backoff alone would be ~0.15 s


def test_caller_errors_are_not_retried(critic: ServerProcess, tmp_path: Path) -> None:
    with fault_proxy(critic.url) as (url, proxy):
        tc = _client([url], tmp_path)
        bad = CritiqueRequest(problem="Prove it.", reference_answer="1", steps=["a"])
        [got] = tc.critique_step(0, [bad])
        tc.close()
    assert isinstance(got, CriticError) and got.status == 422 and proxy.hits == 1
    entry = json.loads((tmp_path / "critiques.jsonl").read_text().splitlines()[0])
    assert entry["error"]["code"] == "unsupported_problem"


def test_gives_up_after_max_attempts(critic: ServerProcess, tmp_path: Path) -> None:
    with fault_proxy(critic.url) as (url, proxy):
        proxy.fail_next, proxy.retry_after = 100, "0"
        tc = _client([url], tmp_path, retry=RetryPolicy(max_attempts=3, base_delay_s=0.01))
        [got] = tc.critique_step(0, requests(1))
        tc.close()
    assert isinstance(got, CriticError) and got.status == 503 and proxy.hits == 3
    assert tc.outcomes.failed == 1 and tc.outcomes.errors == {"overloaded": 1}


@pytest.mark.parametrize(
    ("status", "code", "retried"),
    [
        (502, "invalid_critique", False),  # deterministic at T=0: the same invalid critique again
        (422, "invalid_request", False),
        (500, "internal", False),
        (502, "engine_error", True),
        (504, "timeout", True),
        (429, "rate_limited", True),
        (503, "overloaded", True),
    ],
)
def test_retries_follow_the_error_code(
    critic: ServerProcess, tmp_path: Path, status: int, code: str, retried: bool
) -> None:
    with fault_proxy(critic.url) as (url, proxy):
        proxy.fail_next, proxy.fail_status, proxy.fail_code, proxy.retry_after = 1, status, code, None
        tc = _client([url], tmp_path)
        [got] = tc.critique_step(0, requests(1))
        tc.close()
    if retried:
        assert isinstance(got, Critique) and proxy.hits == 2
    else:
        assert isinstance(got, CriticError) and got.code == code and proxy.hits == 1
        assert tc.outcomes.errors == {code: 1}


def test_waits_for_a_critic_that_is_still_loading(critic: ServerProcess, tmp_path: Path) -> None:
    lines: list[str] = []
    with fault_proxy(critic.url) as (url, proxy):
        proxy.not_ready_until = time.monotonic() + 3.0
        settings = CriticSettings(urls=[url], retry=FAST_RETRY, ready_timeout_s=30)
        tc = TrainerCritic(settings, tmp_path / "critiques.jsonl")
        start = time.perf_counter()
        tc.wait_ready(progress=lines.append, report_every_s=1.0)
        waited = time.perf_counter() - start
        [got] = tc.critique_step(0, requests(1))
        tc.close()
    assert 2.5 <= waited < 15 and proxy.ready_polls >= 2
    assert lines and "waiting for the critic" in lines[0] and "503" in lines[0]
    assert isinstance(got, Critique) and proxy.hits == 1  # the first critique went to a ready critic


def test_a_critic_that_never_gets_ready_stops_the_run(critic: ServerProcess, tmp_path: Path) -> None:
    with fault_proxy(critic.url) as (url, proxy):
        proxy.not_ready_until = time.monotonic() + 60
        tc = TrainerCritic(CriticSettings(urls=[url], ready_timeout_s=1.5), tmp_path / "critiques.jsonl")
        with pytest.raises(CriticUnavailable, match=r"not ready: no critic ready after 1\.5 s"):
            tc.wait_ready()
        tc.close()


def test_dead_and_dropping_replicas(critic: ServerProcess, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with dropping_replica() as dropper, fault_proxy(critic.url) as (url, proxy):
        tc = _client([dead, dropper, url], tmp_path)
        results = tc.critique_step(0, requests(32))
        stats = dict(tc._pool.stats)
        tc.close()
    assert all(isinstance(r, Critique) for r in results), [r for r in results if not isinstance(r, Critique)][:2]
    assert proxy.forwarded == 32  # every critique came from the healthy replica, none lost or doubled
    assert stats["retries"] >= 1 and stats["failures"] == 0
    assert len((tmp_path / "critiques.jsonl").read_text().splitlines()) == 32


def test_a_step_waits_about_one_critic_latency(critic: ServerProcess, tmp_path: Path) -> None:
    latency = 1.0
    with fault_proxy(critic.url) as (url, proxy):
        proxy.delay_s = latency
        tc = _client([url], tmp_path, max_concurrency=64)
        start = time.perf_counter()
        results = tc.critique_step(0, requests(32))
        waited = time.perf_counter() - start
        tc.close()
    assert all(isinstance(r, Critique) for r in results)
    print(f"32 rollouts, critic latency {latency} s: waited {waited:.2f} s ({waited / latency:.2f} L)")
    assert proxy.max_in_flight == 32  # all of the step's critiques were in flight at once, not one after another


def test_least_outstanding_balancing(critic: ServerProcess, tmp_path: Path) -> None:
    with fault_proxy(critic.url) as (slow_url, slow), fault_proxy(critic.url) as (fast_url, fast):
        slow.delay_s = 0.5
        tc = _client([slow_url, fast_url], tmp_path, max_concurrency=4)
        tc.critique_step(0, requests(24))
        tc.close()
    assert slow.forwarded + fast.forwarded == 24
    assert fast.forwarded > slow.forwarded  # the fast replica frees up sooner, so it takes more


def test_log_survives_a_torn_line_and_cuts_back_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "critiques.jsonl"
    log = CritiqueLog(path)
    log.append({"key": "0:0:a", "step": 0, "index": 0, "critique": None})
    position = log.position()
    log.append({"key": "1:0:b", "step": 1, "index": 0, "critique": None})
    log.close()
    with path.open("ab") as f:
        f.write(b'{"key": "2:0:c", "step": 2, "ind')  # kill -9 in the middle of a write
    reopened = CritiqueLog(path)
    assert set(reopened.entries) == {"0:0:a", "1:0:b"} and reopened.torn == 1
    reopened.append({"key": "2:0:c", "step": 2, "index": 0, "critique": None})
    reopened.close()
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["0:0:a", "1:0:b", "2:0:c"]
    resumed = CritiqueLog(path, truncate_to=position)
    assert set(resumed.entries) == {"0:0:a"}
    resumed.close()
    with path.open("ab") as f:
        f.write(b"not json\n")
    with path.open("ab") as f:
        f.write(b'{"key": "x"}\n')
    with pytest.raises(ValueError, match="corrupt line"):
        CritiqueLog(path)


def test_logged_critiques_are_reused(critic: ServerProcess, tmp_path: Path) -> None:
    with fault_proxy(critic.url) as (url, proxy):
        first = _client([url], tmp_path)
        a = first.critique_step(3, requests(4))
        first.close()
        again = _client([url], tmp_path)
        b = again.critique_step(3, requests(4))
        again.close()
    assert proxy.forwarded == 4 and again.outcomes.reused == 4 and again.outcomes.cases == {"A": 4}
    assert [x.feedback for x in a] == [x.feedback for x in b]  # type: ignore[union-attr]
