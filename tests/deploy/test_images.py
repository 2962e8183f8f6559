"""The Dockerfiles, read statically: what each image runs, as whom, with which settings, probes and code.

`make test-deploy` builds and runs the images with a real Docker engine; these checks need no engine and run in
the suite, so a renamed setting, console script or route breaks `make test` as soon as the images would break.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.deploy.files import (
    DOCKER,
    DOCKERFILES,
    Rejected,
    app_routes,
    check_command,
    console_scripts,
    probe_paths,
    read_dockerfile,
    setting_env_names,
)

CRITICS = ["critic.Dockerfile", "critic-vllm.Dockerfile"]
HALVES = {  # what each image's build context may hold of the code, and what it must not
    "critic.Dockerfile": ({"shared", "critic_service"}, {"trainer", "configs"}),
    "critic-vllm.Dockerfile": ({"shared", "critic_service"}, {"trainer", "configs"}),
    "trainer.Dockerfile": ({"shared", "trainer", "configs"}, {"critic_service"}),
}
OFFICIAL_BASES = {
    "critic.Dockerfile": "python:3.11-slim",
    "critic-vllm.Dockerfile": "vllm/vllm-openai:v0.33.0",
    "trainer.Dockerfile": "python:3.11-slim",
}


def test_the_three_images_are_there() -> None:
    assert sorted(p.name for p in DOCKERFILES) == sorted(HALVES)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_image_is_a_build_argument_with_the_official_default(path: Path) -> None:
    d = read_dockerfile(path)
    assert d.args.get("BASE") == OFFICIAL_BASES[path.name]
    assert next(f for f in d.froms if f != "scratch") == "${BASE}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_a_fixed_non_root_user(path: Path) -> None:
    # Numeric, so Kubernetes' runAsNonRoot can verify it; the manifests' runAsUser is the same number.
    assert read_dockerfile(path).user == "10001:10001"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_entrypoint_is_exec_form_of_a_console_script_and_accepted(path: Path) -> None:
    d = read_dockerfile(path)
    assert d.entrypoint, "no ENTRYPOINT (or not in exec form: a shell would be PID 1 and swallow SIGTERM)"
    assert d.entrypoint[0] in console_scripts()
    if d.entrypoint[0] == "stepalign-critic":
        # The server reads every setting from STEPALIGN_* variables: `serve` alone must be a whole command.
        check_command([*d.entrypoint])
    else:
        check_command([*d.entrypoint, "train", "--config", "configs/paper/stepalign.yaml"])


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_stepalign_variable_is_a_setting(path: Path) -> None:
    env = {k for k in read_dockerfile(path).env if k.startswith("STEPALIGN_")}
    assert env <= setting_env_names(), env - setting_env_names()


@pytest.mark.parametrize("name", CRITICS)
def test_critic_healthcheck_probes_readiness_on_a_real_route(name: str) -> None:
    d = read_dockerfile(DOCKER / name)
    assert d.healthcheck is not None
    paths = probe_paths(d.healthcheck)
    assert paths == ["/readyz"]  # compose's service_healthy must mean "the engine answers", not "the process runs"
    assert set(paths) <= app_routes()
    assert "STEPALIGN_PORT" in d.healthcheck and d.env["STEPALIGN_PORT"] == "8000"


def test_probe_paths_are_found_and_unknown_ones_are_not_routes() -> None:
    assert probe_paths("u.urlopen(f'http://127.0.0.1:{port}/healthz')") == ["/healthz"]
    assert "/readyz" in app_routes() and "/healthz" in app_routes()
    assert "/ready" not in app_routes()


def test_trainer_has_no_healthcheck_and_stops_on_sigint() -> None:
    d = read_dockerfile(DOCKER / "trainer.Dockerfile")
    assert d.healthcheck == "NONE"
    assert d.stopsignal == "SIGINT"  # Python as PID 1 ignores SIGTERM; SIGINT raises KeyboardInterrupt
    assert d.env["HF_HOME"] == "/cache/huggingface"


def test_model_and_critique_caches_are_volumes() -> None:
    texts = {p.name: p.read_text() for p in DOCKERFILES}
    assert 'VOLUME ["/var/lib/stepalign/cache"]' in texts["critic.Dockerfile"]
    assert 'VOLUME ["/cache/huggingface", "/var/lib/stepalign/cache"]' in texts["critic-vllm.Dockerfile"]
    assert 'VOLUME ["/cache/huggingface"]' in texts["trainer.Dockerfile"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_build_context_holds_only_its_half_of_the_code(path: Path) -> None:
    ignore = Path(f"{path}.dockerignore").read_text().splitlines()
    rules = [x.strip() for x in ignore if x.strip() and not x.startswith("#")]
    assert rules[0] == "*", "an allow-list: everything is excluded first"
    allowed = {r[1:] for r in rules if r.startswith("!")}
    own, other = HALVES[path.name]
    assert own <= allowed
    assert not (other & allowed)
    copied = {w for line in path.read_text().splitlines() if line.startswith("COPY ") for w in line.split()[1:-1]}
    assert not any(src.split("/")[0] in other for src in copied)


def test_wheel_folders_the_dockerfiles_mount_exist_in_a_fresh_checkout() -> None:
    # A plain `docker build` (no make test-deploy) must find them: they are committed empty.
    tracked = subprocess.run(
        ["git", "ls-files", "docker/wheels"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    locks = sorted(p.stem for p in (REPO / "requirements").glob("*.txt") if p.stem != "cpu")
    assert sorted(Path(t).parent.name for t in tracked if t.endswith(".gitkeep")) == locks


def test_images_never_carry_the_host_ca_bundle() -> None:
    for path in DOCKERFILES:
        text = path.read_text()
        assert "PIP_CERT" not in text and "ca-certificates.crt" not in text, path.name


def test_hadolint_finds_nothing() -> None:
    hadolint = REPO / ".venv" / "bin" / "hadolint"
    exe = str(hadolint) if hadolint.exists() else "hadolint"
    out = subprocess.run([exe, *map(str, DOCKERFILES)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_is_not_a_no_op(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install requests\nCMD python -m http.server\n")
    hadolint = REPO / ".venv" / "bin" / "hadolint"
    out = subprocess.run([str(hadolint) if hadolint.exists() else "hadolint", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "DL3013" in out.stdout  # pip install without a pinned version


def test_command_checks_reject_what_the_code_does_not_accept() -> None:
    with pytest.raises((Rejected, ValueError)):  # argparse or the settings' own validation refuses it
        check_command(["stepalign-critic", "serve", "--engine", "tensorrt"])
    with pytest.raises(Rejected):
        check_command(["stepalign-train", "train", "--config", "configs/paper/missing.yaml"])
    with pytest.raises(Rejected):
        check_command(["uvicorn", "critic_service.app:app"])
    with pytest.raises(ValueError):  # a value the settings reject (pydantic's ValidationError is a ValueError)
        check_command(["stepalign-critic", "serve", "--port", "70000"])
