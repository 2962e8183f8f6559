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
    return parser


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
        return _train(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
