"""The `transformers` engine on CPU with a tiny random model built offline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from critic_service.app import create_app
from critic_service.engines.transformers_engine import TransformersEngine
from critic_service.settings import Settings
from tests.critic_service.test_server import REQUEST
from tests.critic_service.vllm_setup import SAMPLING, job
from tests.servers import ready_client
from trainer.toy.tiny_model import build_tiny_qwen3


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-hf"))


async def test_generates_and_counts_tokens(model: Path) -> None:
    engine = TransformersEngine(str(model), device="cpu")
    await engine.start()
    assert await engine.ready()
    gen = await engine.generate(job("hf-1", sampling=SAMPLING.model_copy(update={"max_tokens": 40})))
    assert 0 < gen.usage.completion_tokens <= 40  # stopped at 40 tokens or at an end of turn
    assert gen.usage.prompt_tokens > 500
    await engine.close()
    assert not await engine.ready()


async def test_cancel_stops_generation_early(model: Path) -> None:
    engine = TransformersEngine(str(model), device="cpu")
    await engine.start()
    long = SAMPLING.model_copy(update={"max_tokens": 3000})
    task = asyncio.create_task(engine.generate(job("hf-2", sampling=long)))
    await asyncio.sleep(0.5)
    start = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - start < 2.0  # the generation loop noticed the cancellation
    await engine.close()


def test_random_output_is_rejected_with_every_attempt_listed(model: Path) -> None:
    settings = Settings(
        engine="transformers",
        model=str(model),
        device="cpu",
        sampling=SAMPLING.model_copy(update={"max_tokens": 30}),
        max_attempts=2,
        cache_path=None,
        answer_workers=1,
    )
    with ready_client(create_app(settings)) as client:
        r = client.post("/v1/critiques", json=REQUEST)
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "invalid_critique" and [d["attempt"] for d in err["details"]] == [1, 2]
