"""Session-wide fixtures of the trainer and end-to-end tests: one checker critic server, one tiny workspace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, critic_process


@pytest.fixture(scope="session")
def critic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real `stepalign-critic serve` process with the checker engine, no cache."""
    with critic_process(tmp_path_factory.mktemp("critic"), "--no-cache") as s:
        yield s


@pytest.fixture(scope="session")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tiny model (`tiny/`) and 24 arithmetic problems (`train.jsonl`)."""
    from tests.trainer.runs import workspace

    r = tmp_path_factory.mktemp("workspace")
    workspace(r)
    return r
