"""docker/compose.yaml, read statically: host networking on 127.0.0.1, real settings, commands the code accepts.

`make test-deploy` runs the cpu profile for real; the gpu profile needs GPUs, so its wiring is checked here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import REPO
from tests.deploy.files import (
    TRAINER_KEY_ENV,
    check_command,
    compose,
    interpolate,
    read_dockerfile,
    setting_env_names,
)

GPU = {"vllm", "critic", "trainer"}
CPU = {"critic-cpu", "toy-data", "trainer-cpu"}


def services() -> dict[str, Any]:
    svcs: dict[str, Any] = compose()["services"]
    return svcs


def argv(service: dict[str, Any], image_entrypoint: list[str]) -> list[str]:
    """What the container runs: compose's entrypoint or the image's, then compose's command (defaults applied)."""
    entry = service.get("entrypoint", image_entrypoint)
    return [interpolate(str(x)) for x in [*entry, *service.get("command", [])]]


def image_entrypoint(name: str) -> list[str]:
    dockerfile = "critic.Dockerfile" if name.startswith("critic") else "trainer.Dockerfile"
    entry = read_dockerfile(REPO / "docker" / dockerfile).entrypoint
    assert entry is not None
    return entry


def test_profiles_split_the_gpu_topology_from_the_cpu_one() -> None:
    by_profile: dict[str, set[str]] = {}
    for name, svc in services().items():
        (profile,) = svc["profiles"]
        by_profile.setdefault(profile, set()).add(name)
    assert by_profile == {"gpu": GPU, "cpu": CPU}


def test_host_network_only_and_every_address_is_loopback() -> None:
    data = compose()
    assert "networks" not in data
    addresses = re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", (REPO / "docker" / "compose.yaml").read_text())
    assert set(addresses) == {"127.0.0.1"}
    for name, svc in services().items():
        assert svc["network_mode"] == "host", name
        assert "ports" not in svc and "networks" not in svc, name


def test_every_stepalign_variable_is_a_setting_or_the_trainers_key() -> None:
    for name, svc in services().items():
        env = {k for k in svc.get("environment", {}) if k.startswith("STEPALIGN_")}
        allowed = {TRAINER_KEY_ENV} if name.startswith("trainer") else setting_env_names()
        assert env <= allowed, (name, env - allowed)


def test_critic_settings_come_by_environment_and_are_valid() -> None:
    from critic_service.settings import Settings

    for name in ("critic", "critic-cpu"):
        svc = services()[name]
        assert "command" not in svc, "every setting by environment"
        env = {k.removeprefix("STEPALIGN_").lower(): interpolate(str(v)) for k, v in svc["environment"].items()}
        settings = Settings(**{k: v for k, v in env.items() if v != ""})
        assert settings.host == "127.0.0.1"
        check_command(argv(svc, image_entrypoint(name)))
        assert svc["read_only"] is True and svc["tmpfs"] == ["/tmp"]


def test_gpu_critic_fronts_the_vllm_server_with_keys_from_the_env_file() -> None:
    vllm, critic = services()["vllm"], services()["critic"]
    flags = dict(
        x.removeprefix("--").split("=", 1) if "=" in x else (x.removeprefix("--"), "") for x in vllm["command"]
    )
    assert flags["model"] == "Qwen/QwQ-32B" == critic["environment"]["STEPALIGN_MODEL"]
    assert flags["reasoning-parser"] == "deepseek_r1" and "enable-prefix-caching" in flags
    assert flags["host"] == "127.0.0.1"
    assert critic["environment"]["STEPALIGN_ENGINE"] == "openai"
    assert critic["environment"]["STEPALIGN_OPENAI_BASE_URL"] == f"http://127.0.0.1:{flags['port']}/v1"
    assert critic["environment"]["STEPALIGN_API_KEYS"] == "${STEPALIGN_API_KEYS:-}"  # from docker/.env
    assert critic["depends_on"] == {"vllm": {"condition": "service_healthy"}}
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    devices = vllm["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
    assert len(devices) == int(flags["tensor-parallel-size"])
    example = (REPO / "docker" / "env.example").read_text()
    assert "STEPALIGN_API_KEYS=" in example and f"{TRAINER_KEY_ENV}=" in example


def test_trainers_wait_for_a_healthy_critic_and_run_accepted_commands() -> None:
    gpu, cpu = services()["trainer"], services()["trainer-cpu"]
    assert gpu["depends_on"] == {"critic": {"condition": "service_healthy"}}
    assert cpu["depends_on"] == {
        "critic-cpu": {"condition": "service_healthy"},
        "toy-data": {"condition": "service_completed_successfully"},
    }
    check_command(argv(gpu, image_entrypoint("trainer")))
    check_command(argv(cpu, image_entrypoint("trainer-cpu")))
    critic_port = interpolate(services()["critic-cpu"]["environment"]["STEPALIGN_PORT"])
    assert f"--critic-url=http://127.0.0.1:{critic_port}" in argv(cpu, [])
    gpu_devices = gpu["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
    vllm_devices = services()["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
    assert not set(gpu_devices) & set(vllm_devices)


def test_gpu_trainer_builds_the_cuda_lock_and_the_cpu_one_the_cpu_lock() -> None:
    assert services()["trainer"]["build"]["args"]["LOCK"] == "trainer-gpu"
    assert services()["toy-data"]["build"]["args"]["LOCK"] == "trainer-cpu"
    for name in ("trainer", "toy-data"):
        lock = services()[name]["build"]["args"]["LOCK"]
        assert (REPO / "requirements" / f"{lock}.txt").exists()


@pytest.mark.parametrize("name", ["critic", "critic-cpu"])
def test_critic_stop_grace_period_leaves_time_to_drain(name: str) -> None:
    from critic_service.settings import Settings

    grace = interpolate(services()[name]["stop_grace_period"])
    env = services()[name].get("environment", {})
    drain = float(env.get("STEPALIGN_DRAIN_TIMEOUT_S", Settings.model_fields["drain_timeout_s"].default))
    # SIGTERM, then in-flight critiques drain for up to drain_timeout_s, then the engine stops (a few seconds).
    assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) >= drain + 5


def test_toy_data_snippet_uses_real_functions() -> None:
    import trainer.data
    import trainer.toy.problems
    import trainer.toy.tiny_model

    svc = services()["toy-data"]
    assert svc["entrypoint"] == ["python", "-c"]
    (snippet,) = svc["command"]
    compile(snippet, "toy-data", "exec")
    assert hasattr(trainer.toy.tiny_model, "build_tiny_qwen3")
    assert hasattr(trainer.toy.problems, "make_problems") and hasattr(trainer.data, "write_problems")
    model_dir = re.search(r"build_tiny_qwen3\(Path\('([^']+)'\)\)", snippet)
    problems = re.search(r"write_problems\(make_problems\(\d+, seed=0\), Path\('([^']+)'\)\)", snippet)
    assert model_dir and problems
    trainer_cmd = argv(services()["trainer-cpu"], [])
    assert f"--model={model_dir.group(1)}" in trainer_cmd and f"--train-data={problems.group(1)}" in trainer_cmd
