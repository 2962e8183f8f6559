"""`stepalign-train`: train a condition (stepalign, refsol, grpo) against a local or remote critic."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from trainer.toy import cli as toy_cli


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
    d = sub.add_parser("prepare-data", help="format and difficulty filters, then train/test splits and a manifest")
    d.add_argument("--source", required=True, help="problems: a .jsonl/.json/.parquet file or a dataset name")
    d.add_argument("--format", default="auto", help="field mapping (auto, openmathreasoning, gsm8k, math500, ...)")
    d.add_argument("--split", default="train")
    d.add_argument("--limit", type=int)
    d.add_argument("--out", type=Path, required=True, help="output folder (train.jsonl, test.jsonl, manifest.json)")
    d.add_argument("--solver", help="the model whose difficulty is measured (e.g. Qwen/Qwen3-1.7B)")
    d.add_argument("--backend", default="auto", choices=["auto", "vllm", "transformers"])
    d.add_argument("--samples", type=int, default=16)
    d.add_argument("--keep-below", type=int, default=5, help="keep problems solved fewer times than this")
    d.add_argument("--test-size", type=int, default=30)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--temperature", type=float, default=1.1)
    d.add_argument("--max-new-tokens", type=int, default=2048)
    d.add_argument("--batch-size", type=int, default=8)
    d.add_argument("--no-difficulty-filter", action="store_true")
    e = sub.add_parser("eval", help="Avg@k / Maj@k / Pass@k of a model or of every checkpoint of a run")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a model folder or hub name")
    src.add_argument("--run", type=Path, help="a run folder: every checkpoint-N is evaluated (a curve)")
    e.add_argument("--data", required=True, help="test problems (file or dataset)")
    e.add_argument("--format", default="auto")
    e.add_argument("--limit", type=int)
    e.add_argument("--k", type=int, default=12, help="samples per problem")
    e.add_argument("--temperature", type=float, default=1.1)
    e.add_argument("--max-new-tokens", type=int, default=2048)
    e.add_argument("--batch-size", type=int, default=8)
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
    a.add_argument("--context-tokens", type=int, default=1536)
    a.add_argument("--out", type=Path, required=True)
    toy_cli.add_parser(sub)
    return parser


def _eval(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from trainer.data import load_problems
    from trainer.evaluate import checkpoints, evaluate, write_report
    from trainer.sampling import SamplingSettings, make_sampler

    problems = load_problems(args.data, fmt=args.format, limit=args.limit)
    if args.run is not None:
        models = [(p.name, step, str(p)) for step, p in checkpoints(args.run)]
        if not models:
            raise ValueError(f"{args.run}: no checkpoint-N or final/ folder to evaluate")
        out = args.out or args.run / "eval"
    else:
        models = [(Path(args.model).name or args.model, 0, args.model)]
        out = args.out or Path("eval")
    settings = SamplingSettings(
        temperature=args.temperature, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed
    )
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


def _analyze(args: argparse.Namespace) -> int:
    import json

    from trainer.analysis import analyze, load_rollouts
    from trainer.data import load_problems

    if (args.run is None) == (args.rollouts is None):
        raise ValueError("give --run (a stepalign run folder) or --rollouts (a JSONL file)")
    source = args.rollouts or args.run / "critiques.jsonl"
    lines = [json.loads(x) for x in source.read_text().splitlines() if x.strip()]
    problems: dict[str, Any] = {}
    if args.run is not None:
        config = json.loads((args.run / "config.resolved.json").read_text())
        problems = {p.id: p.to_json() for p in load_problems(config["data"]["train"])}
    rollouts = load_rollouts(lines, problems, args.count)
    if not rollouts:
        raise ValueError(f"{source}: no critiqued rollouts to analyse")
    report = analyze(args.model, rollouts, args.out, budget=args.context_tokens)
    print(json.dumps(report["aggregate"], indent=2))
    print(f"wrote {args.out}/analysis.json, {args.out}/advantages.html and {len(rollouts)} PNGs")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    import json

    from tqdm import tqdm

    from trainer.data import load_problems
    from trainer.prepare import PrepareSettings, prepare
    from trainer.sampling import SamplingSettings, make_sampler, pick_backend

    problems = load_problems(args.source, fmt=args.format, split=args.split, limit=args.limit)
    settings = PrepareSettings(
        samples=args.samples,
        keep_below=args.keep_below,
        test_size=args.test_size,
        seed=args.seed,
        difficulty_filter=not args.no_difficulty_filter,
    )
    sampler = None
    meta: dict[str, Any] = {"source": args.source, "format": args.format}
    bar = tqdm(total=len(problems), desc=f"sampling {args.samples} solutions per problem", unit="problem")
    if settings.difficulty_filter:
        if not args.solver:
            raise ValueError("--solver is needed for the difficulty filter (or pass --no-difficulty-filter)")
        sampling = SamplingSettings(
            temperature=args.temperature, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed
        )
        backend = pick_backend(args.backend)
        sampler = make_sampler(args.solver, backend, sampling, progress=bar.update)
        meta |= {"solver": args.solver, "backend": backend, "temperature": args.temperature,
                 "max_new_tokens": args.max_new_tokens}  # fmt: skip
    manifest = prepare(problems, args.out, settings, sampler, meta)
    bar.close()
    print(json.dumps(manifest["counts"]))
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
    key = os.environ.get(config.critic.api_key_env) if config.critic.api_key_env else None
    summary = run(config, resume=args.resume, critic_api_key=key)
    if int(os.environ.get("RANK", "0")) == 0:
        for line in summary.lines():
            print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per critique is noise
    try:
        handler = {"prepare-data": _prepare, "eval": _eval, "compare": _compare, "analyze": _analyze}
        handler["toy"] = toy_cli.run
        return handler.get(args.command, _train)(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
