"""`stepalign-train toy ...`: pretrain the toy world's solver, measure its context gap and where A_t lands.

Registered in `trainer.cli` by `add_parser(subparsers)`; `run(args)` dispatches. Nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Add `toy pretrain|data|gap|advantages` to the `stepalign-train` subcommands."""
    toy = subparsers.add_parser("toy", help="the toy world of the CPU demo: pretrain its solver, measure it")
    sub = toy.add_subparsers(dest="toy_command", required=True)

    p = sub.add_parser("pretrain", help="pretrain the toy solver into a folder (reused when the settings match)")
    p.add_argument("--out", type=Path, required=True, help="the solver's folder (a model folder)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="train for this long (default: a fixed number of examples)")
    budget.add_argument("--examples", type=int, help="training examples (default 32000; 12000 with --quick)")
    p.add_argument("--quick", action="store_true", help="the quick solver (~2 minutes on 2 cores): for CI")
    p.add_argument("--rebuild", action="store_true", help="pretrain even if the folder holds a matching solver")
    p.add_argument("--seed", type=int, help="seed of the corpus and the initial weights (default 0)")
    p.add_argument("--threads", type=int, help="torch threads (default: the cores other processes leave free)")
    p.add_argument("--critic-url", help="a running critic (default: a checker critic is started on 127.0.0.1)")
    p.add_argument(
        "--no-wrong-prefix",
        action="store_true",
        help="leave out the teacher examples that continue a wrong prefix (the ablation of ../shared/TOY-WORLD.md)",
    )
    p.add_argument("--gap", type=int, default=0, metavar="N", help="then measure the context gap on N problems")
    p.set_defaults(toy_handler=_pretrain)

    d = sub.add_parser("data", help="write toy training and held-out test problems (train.jsonl, test.jsonl)")
    d.add_argument("--out", type=Path, required=True, help="folder for train.jsonl and test.jsonl")
    d.add_argument("--train", type=int, default=4000, help="training problems (default 4000)")
    d.add_argument("--test", type=int, default=500, help="held-out problems (default 500)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(toy_handler=_data)

    g = sub.add_parser("gap", help="greedy accuracy with the student prompt, with feedback, with the reference")
    g.add_argument("--model", type=Path, required=True, help="a pretrained toy solver's folder")
    g.add_argument("--problems", type=int, default=200, help="held-out problems (default 200)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--critic-url", help="a running critic (default: a checker critic is started on 127.0.0.1)")
    g.add_argument("--threads", type=int)
    g.add_argument("--out", type=Path, help="also write the JSON here")
    g.set_defaults(toy_handler=_gap)

    a = sub.add_parser("advantages", help="where A_t lands on sampled wrong and correct rollouts, per context")
    a.add_argument("--model", type=Path, required=True, help="a pretrained toy solver's folder")
    a.add_argument("--wrong", type=int, default=50, help="wrong (case D) rollouts to score")
    a.add_argument("--correct", type=int, default=50, help="correct (case A) rollouts to score")
    a.add_argument("--temperature", type=float, default=1.0)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--critic-url")
    a.add_argument("--threads", type=int)
    a.add_argument("--out", type=Path, help="also write the JSON here")
    a.set_defaults(toy_handler=_advantages)


def run(args: argparse.Namespace) -> int:
    handler = args.toy_handler
    code: int = handler(args)
    return code


def _solver(path: Path) -> Path:
    if not (path / "config.json").exists() or not (path / "tokenizer.json").exists():
        raise ValueError(
            f"{path}: not a toy solver folder (no config.json and tokenizer.json); "
            f"make one with `stepalign-train toy pretrain --out {path}`"
        )
    return path


def _threads(n: int | None) -> None:
    import torch

    from trainer.toy.pretrain import default_threads

    torch.set_num_threads(n or default_threads())


def _print_gap(gap: dict[str, Any]) -> None:
    fb = gap["feedback"]
    fb_acc = "n/a" if fb["accuracy"] is None else f"{fb['accuracy']:.0%}"
    copies = "n/a" if fb["exact_copy_share"] is None else f"{fb['exact_copy_share']:.0%}"
    print(
        f"context gap on {gap['problems']} held-out problems (greedy): "
        f"student {gap['student']['accuracy']:.0%}; "
        f"with the critic's feedback on its own wrong attempt {fb_acc} of {fb['attempts']} ({copies} exact copies), "
        f"over all problems {gap['feedback_all']['accuracy']:.0%}; "
        f"with the reference solution {gap['refsol']['accuracy']:.0%}"
    )


def _pretrain(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from trainer.toy.gap import measure_gap
    from trainer.toy.pretrain import pretrain, settings_from

    settings = settings_from(args.quick, examples=args.examples, minutes=args.minutes, seed=args.seed)
    if args.no_wrong_prefix:
        settings = replace(settings, mix=settings.mix.without_wrong_prefix())
    result = pretrain(args.out, settings, critic_url=args.critic_url, rebuild=args.rebuild, threads=args.threads)
    if args.gap:
        _threads(args.threads)
        gap = measure_gap(args.out, problems=args.gap, critic_url=args.critic_url, log=print)
        (args.out / "gap.json").write_text(json.dumps(gap, indent=2) + "\n", encoding="utf-8")
        _print_gap(gap)
    print(f"toy solver: {result.path} ({'reused' if result.reused else 'pretrained'})")
    return 0


def _data(args: argparse.Namespace) -> int:
    from trainer.data import write_problems
    from trainer.toy.world import toy_problems

    train = write_problems(toy_problems(args.train, seed=args.seed, split="train"), args.out / "train.jsonl")
    test = write_problems(toy_problems(args.test, seed=args.seed + 1, split="test"), args.out / "test.jsonl")
    print(f"wrote {train} training problems to {args.out / 'train.jsonl'} and {test} held-out ones to "
          f"{args.out / 'test.jsonl'} (split by a hash of the problem: none is in both)")  # fmt: skip
    return 0


def _gap(args: argparse.Namespace) -> int:
    from trainer.toy.gap import measure_gap

    model = _solver(args.model)
    _threads(args.threads)
    gap = measure_gap(model, problems=args.problems, seed=args.seed, critic_url=args.critic_url, log=print)
    if args.out:
        args.out.write_text(json.dumps(gap, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in gap.items() if k != "examples"}, indent=2))
    _print_gap(gap)
    return 0


def _advantages(args: argparse.Namespace) -> int:
    from trainer.toy.advantages import measure_advantages

    model = _solver(args.model)
    _threads(args.threads)
    report = measure_advantages(
        model,
        wrong=args.wrong,
        correct=args.correct,
        temperature=args.temperature,
        seed=args.seed,
        critic_url=args.critic_url,
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0
