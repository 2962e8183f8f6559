"""docker/k8s/: the manifests validate offline against a pinned Kubernetes version, and their wiring is real.

kubernetes-validate carries the Kubernetes JSON schemas, so this needs no cluster; --strict rejects unknown fields.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.deploy.files import (
    K8S_VERSION,
    MANIFESTS,
    TRAINER_KEY_ENV,
    app_routes,
    check_command,
    k8s_objects,
    pod_spec,
    read_dockerfile,
    setting_env_names,
)

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the dev extra")


def objects(kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for _, o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def container(obj: dict[str, Any]) -> dict[str, Any]:
    pod = pod_spec(obj)
    assert pod is not None
    (c,) = pod["containers"]
    return c


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path) -> None:
    for doc in k8s_objects():
        if doc[0] == path:
            kubernetes_validate.validate(doc[1], K8S_VERSION, strict=True)


def test_validation_is_not_a_no_op() -> None:
    deployment = objects("Deployment", "stepalign-critic")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}  # a typo of `replicas`
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_critic_probes_are_routes_liveness_healthz_readiness_readyz() -> None:
    c = container(objects("Deployment", "stepalign-critic"))
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {c[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")} <= app_routes()


def test_critic_settings_from_configmap_keys_from_secret() -> None:
    from critic_service.settings import Settings

    deployment = objects("Deployment", "stepalign-critic")
    c = container(deployment)
    config = objects("ConfigMap", "stepalign-critic")["data"]
    assert c["envFrom"] == [{"configMapRef": {"name": "stepalign-critic"}}]
    assert set(config) <= setting_env_names(), set(config) - setting_env_names()
    settings = Settings(**{k.removeprefix("STEPALIGN_").lower(): v for k, v in config.items()})
    assert settings.engine_name == "openai" and settings.port == 8000
    keys_mount = next(m for m in c["volumeMounts"] if m["name"] == "keys")
    secret = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "keys")["secret"]  # type: ignore[index]
    assert str(settings.api_keys_file).startswith(keys_mount["mountPath"] + "/")
    assert secret["secretName"] == "stepalign-critic-keys"
    assert "env" not in c, "settings come from the ConfigMap only"
    assert deployment["spec"]["replicas"] >= 2


def test_critic_service_and_vllm_wiring() -> None:
    config = objects("ConfigMap", "stepalign-critic")["data"]
    vllm_service = objects("Service", "stepalign-vllm")
    port = vllm_service["spec"]["ports"][0]["port"]
    assert config["STEPALIGN_OPENAI_BASE_URL"] == f"http://stepalign-vllm:{port}/v1"
    critic_service = objects("Service", "stepalign-critic")
    assert critic_service["spec"]["ports"][0]["port"] == int(config["STEPALIGN_PORT"])
    policy = objects("NetworkPolicy", "stepalign-vllm")
    allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed == objects("Deployment", "stepalign-critic")["spec"]["selector"]["matchLabels"]


def test_vllm_gets_as_many_gpus_as_its_tensor_parallel_size() -> None:
    c = container(objects("Deployment", "stepalign-vllm"))
    args = dict(a.removeprefix("--").split("=", 1) if "=" in a else (a.removeprefix("--"), "") for a in c["args"])
    assert args["model"] == "Qwen/QwQ-32B"
    assert args["reasoning-parser"] == "deepseek_r1" and "enable-prefix-caching" in args
    tp = int(args["tensor-parallel-size"])
    assert c["resources"]["limits"]["nvidia.com/gpu"] == tp == c["resources"]["requests"]["nvidia.com/gpu"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("name", ["stepalign-train", "stepalign-train-mn"])
def test_trainer_jobs_run_accepted_commands_with_the_key_from_a_secret(name: str) -> None:
    job = objects("Job", name)
    c = container(job)
    check_command([*c["command"], *[a.replace("$(MACHINE_RANK)", "0") for a in c["args"]]])
    assert "--critic-url=http://stepalign-critic:8000" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env[TRAINER_KEY_ENV]["valueFrom"]["secretKeyRef"]["name"] == "stepalign-trainer-key"
    assert {n for n in env if n.startswith("STEPALIGN_")} == {TRAINER_KEY_ENV}
    assert "--resume" in c["args"]  # a retried or resubmitted pod continues from the last checkpoint


def test_multinode_job_ranks_find_rank_zero() -> None:
    job, service = objects("Job", "stepalign-train-mn"), objects("Service", "stepalign-train-mn")
    spec, pod = job["spec"], pod_spec(job)
    assert pod is not None
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    assert service["spec"]["clusterIP"] == "None" and pod["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    c = container(job)
    args = dict(a.removeprefix("--").split("=", 1) for a in c["args"] if a.startswith("--") and "=" in a)
    assert args["main_process_ip"] == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    assert int(args["num_machines"]) == spec["completions"]
    gpus = c["resources"]["limits"]["nvidia.com/gpu"]
    assert int(args["num_processes"]) == spec["completions"] * gpus
    rank = {e["name"]: e for e in c["env"]}["MACHINE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert rank == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert args["machine_rank"] == "$(MACHINE_RANK)"


def test_pods_run_as_the_images_user() -> None:
    uid = {
        "stepalign-critic": read_dockerfile(REPO / "docker" / "critic.Dockerfile").user,
        "stepalign-train": read_dockerfile(REPO / "docker" / "trainer.Dockerfile").user,
        "stepalign-train-mn": read_dockerfile(REPO / "docker" / "trainer.Dockerfile").user,
    }
    for name, user in uid.items():
        kind = "Deployment" if name == "stepalign-critic" else "Job"
        ctx = pod_spec(objects(kind, name))["securityContext"]  # type: ignore[index]
        assert ctx["runAsNonRoot"] is True
        assert f"{ctx['runAsUser']}:{ctx['runAsGroup']}" == user


def test_termination_grace_covers_the_prestop_pause_and_the_drain() -> None:
    deployment = objects("Deployment", "stepalign-critic")
    pause = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    seconds = float(re.search(r"sleep\((\d+(?:\.\d+)?)\)", " ".join(pause)).group(1))  # type: ignore[union-attr]
    from critic_service.settings import Settings

    config = objects("ConfigMap", "stepalign-critic")["data"]  # type: ignore[index]
    drain = float(config.get("STEPALIGN_DRAIN_TIMEOUT_S", Settings.model_fields["drain_timeout_s"].default))
    # the preStop pause, then the drain of in-flight critiques, then a few seconds to stop the engine
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] >= seconds + drain + 5  # type: ignore[index]
