"""`stepalign-critic`: serve the critic, ask it for one critique, or show what a server runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

if TYPE_CHECKING:
    from pydantic_settings import CliSettingsSource

    from critic_service.engines.base import Engine

DEFAULT_URL = "http://127.0.0.1:8000"


def _read(value: str | None, path: str | None, what: str) -> str | None:
    if path is None:
        return value
    if value is not None:
        raise SystemExit(f"give --{what} or --{what}-file, not both")
    return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")


class _Parser(argparse.ArgumentParser):
    """argparse, except that an unknown option's value is not echoed back (it may be a key)."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            flags = [a for a in message.split(":", 1)[1].split() if a.startswith("-")]
            message = f"unrecognized arguments: {' '.join(flags) or '(values only)'}"
        super().error(message)


def _serve_parser(sub: argparse._SubParsersAction[_Parser]) -> CliSettingsSource[Any]:
    from critic_service.settings import add_settings_arguments

    p = sub.add_parser(
        "serve",
        help="run the critic service",
        description="Run the critic service. Every setting below is also an environment variable "
        "(STEPALIGN_<NAME>, nested: STEPALIGN_SAMPLING__TEMPERATURE) and a key of the --config file; "
        "precedence: command line > environment > config file > defaults.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("STEPALIGN_CONFIG"),
        help="YAML or JSON file of settings (default: $STEPALIGN_CONFIG)",
    )
    p.add_argument("--no-cache", action="store_true", help="do not cache critiques (= --cache-path null)")
    return add_settings_arguments(p)


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("STEPALIGN_CRITIC_URL", DEFAULT_URL), help="critic base URL")
    p.add_argument(
        "--api-key-env", default="STEPALIGN_API_KEY", help="environment variable holding the key (default: %(default)s)"
    )
    p.add_argument("--timeout", type=float, default=900.0, help="read timeout in seconds")


def build_parser() -> tuple[argparse.ArgumentParser, CliSettingsSource[Any]]:
    """The CLI, and the settings source that reads `serve`'s flags back."""
    parser = _Parser(prog="stepalign-critic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    source = _serve_parser(sub)
    c = sub.add_parser("critique", help="ask a critic server for one critique")
    _client_args(c)
    c.add_argument("--problem")
    c.add_argument("--problem-file")
    c.add_argument("--solution", help="the student's solution text")
    c.add_argument("--solution-file", help="file with the student's solution, or - for standard input")
    c.add_argument("--reference-answer")
    c.add_argument("--reference-solution")
    c.add_argument("--reference-solution-file")
    c.add_argument("--mode", choices=["splice", "scribe"], default="splice")
    c.add_argument("--json", action="store_true", help="print the critique as JSON")
    i = sub.add_parser("info", help="show the engine, model, prompt version and limits of a critic server")
    _client_args(i)
    return parser, source


def _settings_error(exc: ValidationError) -> str:
    """One line per invalid setting, named as its flag; never the value (it may be a secret)."""
    lines = []
    for e in exc.errors():
        flag = "--" + ".".join(str(p) for p in e["loc"]).replace("_", "-")
        lines.append(f"error: {flag}: {e['msg']}")
    return "\n".join(lines)


def serve(args: argparse.Namespace, source: CliSettingsSource[Any], engine: Engine | None = None) -> int:
    from critic_service.server import run
    from critic_service.settings import cli_values, resolve_settings

    values = cli_values(source, args)
    if args.no_cache:
        values["cache_path"] = None
    try:
        settings = resolve_settings(values, args.config)
    except ValidationError as exc:
        print(_settings_error(exc), file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # the config file: missing, unreadable, not a mapping
        print(f"error: --config: {exc}", file=sys.stderr)
        return 2
    return run(settings, engine=engine)


def format_critique(c: Any) -> str:
    """A readable rendering of a `Critique` for the terminal."""
    lines = [f"Case {c.case.value}" + (f", pivotal step {c.pivotal_step}" if c.pivotal_step else "")]
    ac = c.answer_check
    lines.append(f"Answer: student {ac.student_answer!r}, reference {ac.reference_answer!r} -> {ac.status.value}")
    lines.append("Summary:")
    for v in c.summary:
        note = f" -- {v.note}" if v.note and v.verdict.value == "incorrect" else ""
        lines.append(f"  Step {v.step}: {v.verdict.value.capitalize()}{note}")
    if c.correction:
        lines.append("Correction:")
        lines.extend(f"  {x}" for x in c.correction.splitlines())
    checks = ", ".join(
        f"{r.rule}={'ok' if r.passed else 'undecided' if r.passed is None else 'FAIL'}" for r in c.checks.results
    )
    m = c.meta
    lines.append(f"Checks: {checks}")
    lines.append(
        f"Engine {m.engine} ({m.model}), prompt {m.prompt_version}, {m.attempts} attempt(s), {m.latency_ms:.0f} ms"
    )
    return "\n".join(lines)


async def _critique(args: argparse.Namespace) -> int:
    from shared.client import CriticClient, CriticError
    from shared.schemas import CritiqueRequest, FeedbackMode

    problem = _read(args.problem, args.problem_file, "problem")
    solution = _read(args.solution, args.solution_file, "solution")
    reference = _read(args.reference_solution, args.reference_solution_file, "reference-solution")
    if not problem or not solution:
        raise SystemExit("stepalign-critic critique needs --problem(-file) and --solution(-file)")
    try:
        request = CritiqueRequest(
            problem=problem,
            student_solution=solution,
            reference_answer=args.reference_answer,
            reference_solution=reference,
            feedback_mode=FeedbackMode(args.mode),
        )
    except ValidationError as exc:
        raise SystemExit(_request_error(exc)) from None
    async with CriticClient(args.url, api_key=os.environ.get(args.api_key_env), read_timeout_s=args.timeout) as client:
        try:
            critique = await client.critique(request)
        except CriticError as exc:
            print(f"error: {exc}", file=sys.stderr)
            if exc.body is not None and exc.body.error.details:
                print(json.dumps(exc.body.error.details, indent=2), file=sys.stderr)
            return 1
    print(critique.model_dump_json(indent=2) if args.json else format_critique(critique))
    return 0


async def _info(args: argparse.Namespace) -> int:
    from shared.client import CriticClient, CriticError

    async with CriticClient(args.url, api_key=os.environ.get(args.api_key_env), read_timeout_s=args.timeout) as client:
        try:
            info = await client.info()
        except CriticError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(info.model_dump_json(indent=2))
    return 0


_FLAGS = {
    "problem": "--problem",
    "student_solution": "--solution",
    "reference_answer": "--reference-answer",
    "reference_solution": "--reference-solution",
}


def _request_error(exc: ValidationError) -> str:
    """The first problem with the request built from the flags, in one line that names flags, not fields."""
    e = exc.errors()[0]
    msg = str(e["msg"]).removeprefix("Value error, ")
    for field, flag in _FLAGS.items():
        msg = msg.replace(f"`{field}`", flag)
    where = _FLAGS.get(str(e["loc"][0]), str(e["loc"][0])) + ": " if e["loc"] else ""
    return f"error: {where}{msg}"


def main(argv: list[str] | None = None, *, engine: Engine | None = None) -> int:
    """The CLI; `engine` replaces the configured engine of `serve` (a test hook for fault injection)."""
    parser, source = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args, source, engine)
        code = asyncio.run(_critique(args) if args.command == "critique" else _info(args))
        sys.stdout.flush()  # here, where a closed pipe can still be handled, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader went away (`... | head -1`): say nothing more, and exit like a tool killed by SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
