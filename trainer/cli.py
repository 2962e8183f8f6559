"""`stepalign-train`: train a condition (stepalign, refsol, grpo) against a local or remote critic."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any


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
    return parser


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
        return _prepare(args) if args.command == "prepare-data" else _train(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
