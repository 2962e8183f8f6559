"""Every command in docs/deploy.md is one the code accepts.

Each ```bash block is split into commands; each command is checked by what it runs: our programs and accelerate
through their own argument parsers (a dry run: nothing starts), docker build/run/compose and kubectl against the
files, build arguments, settings, profiles and Secret names they name, curl against the app's routes, make against
the Makefile. A program this test does not know fails it, so the guide cannot grow an unchecked command.
vLLM's flags are checked by test_vllm_flags.py with vLLM's own parser.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from tests.conftest import REPO
from tests.deploy.files import (
    DOCKER,
    TRAINER_KEY_ENV,
    Rejected,
    app_routes,
    check_command,
    compose,
    k8s_objects,
    read_dockerfile,
    setting_env_names,
)

DOC = REPO / "docs" / "deploy.md"
OPERATORS = {"&&", "||", ";", "|", "&"}


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block: str) -> Iterator[list[str]]:
    """The block's commands as argv lists: continuations joined, comments dropped, split at shell operators."""
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in OPERATORS:
                if current:
                    yield current
                current = []
            else:
                current.append(token)
        if current:
            yield current


def doc_commands() -> list[list[str]]:
    return [cmd for block in bash_blocks(DOC.read_text(encoding="utf-8")) for cmd in commands(block)]


def secret_keys() -> dict[str, set[str]]:
    """Secret name -> the keys the manifests read from it."""
    out: dict[str, set[str]] = {}
    for _, obj in k8s_objects():
        text = repr(obj)
        for name, key in re.findall(r"'secretKeyRef': \{'name': '([^']+)', 'key': '([^']+)'\}", text):
            out.setdefault(name, set()).add(key)
        for name in re.findall(r"'secretName': '([^']+)'", text):
            out.setdefault(name, set())
    return out


def check_env(assignment: str, image: str) -> None:
    name = assignment.split("=", 1)[0]
    if not name.startswith("STEPALIGN_"):
        return
    allowed = {TRAINER_KEY_ENV} if "trainer" in image else setting_env_names()
    if name not in allowed:
        raise Rejected(f"{name} is not a setting of {image}")


def check_docker_build(args: list[str]) -> None:
    dockerfile, build_args, i = None, [], 0
    while i < len(args):
        a = args[i]
        if a in ("-f", "-t", "--build-arg"):
            if a == "-f":
                dockerfile = read_dockerfile(REPO / args[i + 1])
            elif a == "--build-arg":
                build_args.append(args[i + 1])
            i += 2
        elif a == ".":
            i += 1
        else:
            raise Rejected(f"docker build {a}: not an option this guide uses")
    if dockerfile is None:
        raise Rejected("docker build without -f: the Dockerfiles live in docker/")
    for arg in build_args:
        name, _, value = arg.partition("=")
        if name not in dockerfile.args:
            raise Rejected(f"--build-arg {name}: not an ARG of {dockerfile.path.name}")
        if name == "LOCK" and not (REPO / "requirements" / f"{value}.txt").exists():
            raise Rejected(f"--build-arg LOCK={value}: no requirements/{value}.txt")


IMAGES = {"stepalign-critic": "critic.Dockerfile", "stepalign-critic-vllm": "critic-vllm.Dockerfile"}
IMAGES |= {"stepalign-trainer": "trainer.Dockerfile"}
RUN_FLAGS_WITH_VALUE = {"-e", "--env", "-v", "--volume", "--network", "--gpus", "--ipc", "--name", "--entrypoint"}
RUN_FLAGS = {"--rm", "-d", "-it", "--read-only"}


def check_docker_run(args: list[str]) -> None:
    i, env, entrypoint = 0, [], None
    while i < len(args) and args[i].startswith("-"):
        if args[i] in RUN_FLAGS_WITH_VALUE:
            if args[i] in ("-e", "--env"):
                env.append(args[i + 1])
            if args[i] == "--network" and args[i + 1] != "host":
                raise Rejected("containers run on the host network here")
            if args[i] == "--entrypoint":
                entrypoint = [args[i + 1]]
            i += 2
        elif args[i] in RUN_FLAGS:
            i += 1
        else:
            raise Rejected(f"docker run {args[i]}: not an option this guide uses")
    image, rest = args[i], args[i + 1 :]
    dockerfile = read_dockerfile(DOCKER / IMAGES[image.split(":")[0]])
    for e in env:
        check_env(e, image)
    check_command([*(entrypoint or dockerfile.entrypoint or []), *rest])
    if "STEPALIGN_HOST=127.0.0.1" not in env:
        raise Rejected("docker run on the host network must bind 127.0.0.1 (STEPALIGN_HOST)")


def check_compose(args: list[str]) -> None:
    profiles = {p for svc in compose()["services"].values() for p in svc.get("profiles", [])}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] == "-f" and not (REPO / args[i + 1]).exists():
            raise Rejected(f"no compose file {args[i + 1]}")
        if args[i] == "--profile" and args[i + 1] not in profiles:
            raise Rejected(f"no compose profile {args[i + 1]}")
        i += 2
    if args[i] not in ("up", "down", "logs", "ps", "build", "config"):
        raise Rejected(f"docker-compose {args[i]}: not a command this guide uses")
    services = set(compose()["services"])
    for word in args[i + 1 :]:
        if not word.startswith("-") and word not in services:
            raise Rejected(f"no compose service {word}")


def check_kubectl(args: list[str]) -> None:
    names = {(o["kind"].lower(), o["metadata"]["name"]) for _, o in k8s_objects()}
    if args[0] == "apply":
        files = [args[i + 1] for i, a in enumerate(args) if a == "-f"]
        if not files or not all((REPO / f).exists() for f in files):
            raise Rejected(f"kubectl apply: missing files in {files}")
    elif args[:2] == ["create", "secret"]:
        kind, name = args[2], args[3]
        wanted = secret_keys().get(name)
        if wanted is None:
            raise Rejected(f"secret {name} is used by no manifest")
        given = {re.sub(r"^--from-(file|literal)=", "", a).split("=")[0] for a in args[4:] if a.startswith("--from-")}
        if kind == "generic" and name == "stepalign-critic-keys":
            wanted = {"keys.txt"}  # mounted as a file: critic.yaml's STEPALIGN_API_KEYS_FILE names it
        if kind == "generic" and given != wanted:
            raise Rejected(f"secret {name} gets keys {given}, the manifests read {wanted}")
    elif args[0] in ("logs", "scale"):
        ref = next(a for a in args[1:] if not a.startswith("-"))
        kind, _, name = ref.partition("/")
        if (kind, name) not in names:
            raise Rejected(f"kubectl {args[0]} {ref}: no such object in docker/k8s/")
    else:
        raise Rejected(f"kubectl {args[0]}: not a command this guide uses")


def check_one(argv: list[str]) -> None:
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):  # VAR=value prefixes
        check_env(argv[0], "stepalign-trainer" if "train" in " ".join(argv) else "stepalign-critic")
        argv = argv[1:]
    program, args = argv[0], argv[1:]
    if program in ("stepalign-critic", "stepalign-train", "accelerate", "python", "python3"):
        check_command(argv)
    elif program == ".venv/bin/python":
        script, rest = args[0], args[1:]
        modules = {"docker/lock_images.py": "lock_images", "docker/wheelhouse.py": "wheelhouse"}
        import importlib.util

        spec = importlib.util.spec_from_file_location(modules[script], REPO / script)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        module.build_parser().parse_args(rest)
    elif program == "vllm":
        pass  # test_vllm_flags.py
    elif program == "docker" and args[0] == "build":
        check_docker_build(args[1:])
    elif program == "docker" and args[0] == "run":
        check_docker_run(args[1:])
    elif program in ("docker-compose",) or (program == "docker" and args[0] == "compose"):
        check_compose(args if program == "docker-compose" else args[1:])
    elif program == "kubectl":
        check_kubectl(args)
    elif program == "curl":
        url = next(a for a in args if a.startswith("http"))
        if urlparse(url).path not in app_routes():
            raise Rejected(f"curl {url}: not a route of the critic")
    elif program == "make":
        makefile = (REPO / "Makefile").read_text()
        if not all(re.search(rf"^{re.escape(t)}:", makefile, flags=re.M) for t in args):
            raise Rejected(f"make {args}: no such target")
    elif program == "cp":
        if not (REPO / args[0]).exists():
            raise Rejected(f"cp {args[0]}: no such file")
    elif program not in ("printf", "export"):
        raise Rejected(f"{program}: this test does not know how to check it")


def test_every_variable_the_guide_names_is_real() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"\bSTEPALIGN_[A-Z0-9_]+", text))
    assert named <= setting_env_names() | {TRAINER_KEY_ENV}, named - setting_env_names()
    # DEPLOY_* are compose's interpolation variables and make test-deploy's options
    ours = (DOCKER / "compose.yaml").read_text() + (DOCKER / "test-deploy.sh").read_text()
    unknown = {v for v in re.findall(r"\bDEPLOY_[A-Z0-9_]+", text) if v not in ours}
    assert not unknown


def test_the_guide_has_commands() -> None:
    progs = {c[0] for c in doc_commands()}
    assert {"docker", "docker-compose", "kubectl", "stepalign-critic", "accelerate", "vllm", "make"} <= progs


@pytest.mark.parametrize("argv", doc_commands(), ids=lambda c: shlex.join(c)[:60])
def test_every_command_is_accepted(argv: list[str]) -> None:
    check_one(argv)


def test_splitting_and_checking_catch_bad_commands() -> None:
    cmds = list(commands("a --x 1 \\\n  --y 2 # note\nb && c | d 'e f'"))
    assert cmds == [["a", "--x", "1", "--y", "2"], ["b"], ["c"], ["d", "e f"]]
    for bad in (
        ["stepalign-critic", "serve", "--engine", "openia"],
        ["docker", "build", "-f", "docker/critic.Dockerfile", "--build-arg", "LOCKFILE=x", "."],
        [
            "docker",
            "run",
            "--network",
            "host",
            "-e",
            "STEPALIGN_HOST=127.0.0.1",
            "-e",
            "STEPALIGN_KEYS=k",
            "stepalign-critic",
        ],
        ["docker-compose", "-f", "docker/compose.yaml", "--profile", "tpu", "up"],
        ["kubectl", "create", "secret", "generic", "stepalign-trainer-key", "--from-literal=key=k"],
        ["curl", "http://127.0.0.1:8000/v1/critique"],
        ["rm", "-rf", "/"],
    ):
        with pytest.raises((Rejected, ValueError)):
            check_one(bad)
