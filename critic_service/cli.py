"""`stepalign-critic`: serve the critic, ask it for one critique, or show what a server runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


def _read(value: str | None, path: str | None, what: str) -> str | None:
    if path is None:
        return value
    if value is not None:
        raise SystemExit(f"give --{what} or --{what}-file, not both")
    return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the critic service")
    p.add_argument("--config", type=Path, help="YAML or JSON file of settings (see critic_service/settings.py)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--engine", choices=["checker", "vllm", "openai", "transformers"])
    p.add_argument("--model", help="model name or local path; selects the vllm engine unless --engine says otherwise")
    p.add_argument("--served-model-name")
    p.add_argument("--tensor-parallel-size", type=int)
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--openai-base-url", help="an OpenAI-compatible server (vllm serve, SGLang)")
    p.add_argument("--api-keys-file", type=Path, help="one accepted key per line (or set STEPALIGN_API_KEYS)")
    p.add_argument("--max-attempts", type=int)
    p.add_argument("--max-concurrency", type=int)
    p.add_argument("--cache-path", type=Path)
    p.add_argument("--no-cache", action="store_true", help="do not cache critiques")
    p.add_argument("--qwq-sampling", action="store_true", default=None, help="QwQ-32B's recommended sampling")
    p.add_argument("--log-level")


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("STEPALIGN_CRITIC_URL", DEFAULT_URL), help="critic base URL")
    p.add_argument(
        "--api-key-env", default="STEPALIGN_API_KEY", help="environment variable holding the key (default: %(default)s)"
    )
    p.add_argument("--timeout", type=float, default=900.0, help="read timeout in seconds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepalign-critic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
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
    return parser


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from critic_service.app import create_app
    from critic_service.settings import load_settings

    overrides: dict[str, Any] = {
        k: getattr(args, k)
        for k in (
            "host",
            "port",
            "engine",
            "model",
            "served_model_name",
            "tensor_parallel_size",
            "max_model_len",
            "gpu_memory_utilization",
            "openai_base_url",
            "api_keys_file",
            "max_attempts",
            "max_concurrency",
            "cache_path",
            "qwq_sampling",
            "log_level",
        )
    }
    settings = load_settings(args.config, **overrides)
    if args.no_cache:
        settings = settings.model_copy(update={"cache_path": None})
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("stepalign.critic").info("settings: %s", json.dumps(settings.public_dump()))
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0


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
    request = CritiqueRequest(
        problem=problem,
        student_solution=solution,
        reference_answer=args.reference_answer,
        reference_solution=reference,
        feedback_mode=FeedbackMode(args.mode),
    )
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "critique":
        try:
            return asyncio.run(_critique(args))
        except ValueError as exc:  # pydantic validation of the request built from the flags
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return asyncio.run(_info(args))


if __name__ == "__main__":
    sys.exit(main())
