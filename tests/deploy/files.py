"""Read the deployment files (Dockerfiles, compose, Kubernetes manifests) and check commands against the code.

The checks parse every command with the program's real argument parser (a dry run: nothing is started), so a
flag that the code does not accept, a config file that does not exist or a setting that is not a setting fails.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
MANIFESTS = sorted(K8S.glob("*.yaml"))
# The Kubernetes version the manifests are validated against (kubernetes-validate ships its schemas offline).
K8S_VERSION = "1.34.0"
TRAINER_KEY_ENV = "STEPALIGN_API_KEY"  # critic.api_key_env's default: the trainer's only STEPALIGN_* variable


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str] = field(default_factory=dict)  # ARG name -> default
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    healthcheck: str | None = None  # the whole instruction, or "NONE"
    user: str | None = None
    stopsignal: str | None = None
    froms: list[str] = field(default_factory=list)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def read_dockerfile(path: Path) -> Dockerfile:
    d = Dockerfile(path)
    for word, rest in _instructions(path.read_text(encoding="utf-8")):
        if word == "ARG":
            name, _, default = rest.partition("=")
            d.args.setdefault(name, default.strip('"'))
        elif word == "FROM":
            d.froms.append(rest.split()[0])
        elif word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                d.env[name] = value
        elif word in ("ENTRYPOINT", "CMD"):
            setattr(d, word.lower(), json.loads(rest))  # exec form only: JSON, or this fails
        elif word == "HEALTHCHECK":
            d.healthcheck = rest
        elif word == "USER":
            d.user = rest
        elif word == "STOPSIGNAL":
            d.stopsignal = rest
    return d


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    return data


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with every variable unset: the defaults."""
    return re.sub(r"\$\{[A-Z0-9_]+:?-([^}]*)\}", r"\1", value)


def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in MANIFESTS for doc in load_yaml_docs(path)]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec", {})
    if obj["kind"] in ("Deployment", "Job", "StatefulSet"):
        pod: dict[str, Any] = spec["template"]["spec"]
        return pod
    return None


# --- the code's own view: settings, console scripts, routes, parsers -----------------------------------------------


@functools.cache
def setting_env_names() -> frozenset[str]:
    """STEPALIGN_<FIELD> for every setting, and STEPALIGN_<FIELD>__<SUBFIELD> for the fields of nested ones."""
    from pydantic import BaseModel

    from critic_service.settings import Settings

    names = set()
    for name, info in Settings.model_fields.items():
        names.add(f"STEPALIGN_{name.upper()}")
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= {f"STEPALIGN_{name.upper()}__{sub.upper()}" for sub in kind.model_fields}
    return frozenset(names)


@functools.cache
def console_scripts() -> dict[str, str]:
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    scripts: dict[str, str] = data["project"]["scripts"]
    return scripts


@functools.cache
def app_routes() -> frozenset[str]:
    from critic_service.app import create_app
    from critic_service.settings import Settings

    return frozenset(getattr(r, "path", "") for r in create_app(Settings()).routes)


def probe_paths(healthcheck: str) -> list[str]:
    """The URL paths a HEALTHCHECK (or any command text) asks 127.0.0.1 for."""
    return re.findall(r"http://127\.0\.0\.1:[^/'\"\s]*(/[A-Za-z0-9_/]*)", healthcheck)


class Rejected(Exception):
    """A command the code does not accept, and why."""


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports on stderr and exits
        raise Rejected(f"{parser.prog} rejects {shlex.join(argv)}") from exc


def check_critic_command(argv: list[str]) -> argparse.Namespace:
    """`stepalign-critic ARGS`: parsed by its parser; for `serve`, the settings it names are validated too."""
    from critic_service.cli import build_parser
    from critic_service.settings import Settings, cli_values

    parser, source = build_parser()
    args = _parse(parser, argv)
    if args.command == "serve":
        Settings(**cli_values(source, args))  # pydantic raises on a bad value
        config = getattr(args, "config", None)
        if config is not None and not (REPO / config).exists():
            raise Rejected(f"stepalign-critic serve --config {config}: no such file in the repository")
    return args


def check_train_command(argv: list[str]) -> argparse.Namespace:
    """`stepalign-train ARGS`: parsed by its parser; for `train`, the configuration is resolved and validated."""
    from trainer.cli import build_parser
    from trainer.config import load_config, parse_overrides

    args = _parse(build_parser(), argv)
    if args.command == "train":
        if args.config is not None and not (REPO / args.config).exists():
            raise Rejected(f"stepalign-train train --config {args.config}: no such file in the repository")
        overrides = parse_overrides(args.overrides)
        for flag, key in (("condition", "condition"), ("model", "model"), ("output_dir", "output_dir")):
            if getattr(args, flag):
                overrides[key] = str(getattr(args, flag))
        if args.train_data:
            overrides.setdefault("data", {})["train"] = args.train_data
        if args.critic_url:
            overrides.setdefault("critic", {})["urls"] = args.critic_url
        load_config(REPO / args.config if args.config else None, overrides)
    return args


@functools.cache
def _accelerate_parser() -> argparse.ArgumentParser:
    from accelerate.commands.launch import launch_command_parser

    parser: argparse.ArgumentParser = launch_command_parser()
    return parser


def check_accelerate_command(argv: list[str]) -> argparse.Namespace:
    """`accelerate launch ... -m trainer.cli ARGS`: accelerate's own parser, then the trainer's."""
    if not argv or argv[0] != "launch":
        raise Rejected(f"accelerate {shlex.join(argv)}: only `accelerate launch` is used here")
    args = _parse(_accelerate_parser(), argv[1:])
    if args.config_file is not None and not (REPO / args.config_file).exists():
        raise Rejected(f"accelerate launch --config_file {args.config_file}: no such file in the repository")
    if not args.module or args.training_script != "trainer.cli":
        raise Rejected(f"accelerate launch runs {args.training_script!r}, expected -m trainer.cli")
    check_train_command(list(args.training_script_args))
    return args


def check_command(argv: list[str]) -> None:
    """Any of our programs, as an image, compose file or manifest runs it (entrypoint + command)."""
    if not argv:
        raise Rejected("empty command")
    program, rest = argv[0], argv[1:]
    if program not in console_scripts() and program not in ("accelerate", "python", "python3"):
        raise Rejected(f"{program}: not a console script of pyproject.toml, accelerate or python -m")
    if program == "stepalign-critic":
        check_critic_command(rest)
    elif program == "stepalign-train":
        check_train_command(rest)
    elif program == "accelerate":
        check_accelerate_command(rest)
    elif rest[:1] == ["-m"] and rest[1:2] == ["critic_service.cli"]:
        check_critic_command(rest[2:])
    elif rest[:1] == ["-m"] and rest[1:2] == ["trainer.cli"]:
        check_train_command(rest[2:])
    elif rest[:1] == ["-m"]:
        import importlib.util

        if len(rest) < 2 or importlib.util.find_spec(rest[1]) is None:
            raise Rejected(f"{shlex.join(argv)}: no such module")
    elif rest[:1] != ["-c"]:
        raise Rejected(f"{shlex.join(argv)}: python runs a module (-m) or a snippet (-c) here")
