"""`make demo`: the main job on the embedded default. Starts a real critic server (checker engine), builds a tiny
student offline, and trains it with StepAlignFB against the critic over HTTP for a few steps, on the CPU; then
prints what happened (critiques by case, distillation mask rate, loss) and one teacher context.

A random tiny model learns nothing in a few CPU steps; the demo shows the machinery working end to end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def critic_server(log_path: Path) -> Iterator[str]:
    from shared.local_critic import local_critic

    with local_critic(log_path, "--engine", "checker", "--no-cache") as critic:
        print(f"critic: stepalign-critic serve (checker engine) at {critic.url}, pid {critic.proc.pid}")
        yield critic.url
    print("critic: stopped")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (replaced)")
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    import shutil

    from trainer.config import load_config
    from trainer.data import write_problems
    from trainer.toy.problems import make_problems
    from trainer.toy.tiny_model import build_tiny_qwen3
    from trainer.train import run

    out: Path = args.out
    shutil.rmtree(out / "run", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    model = build_tiny_qwen3(out / "tiny-student")
    data = out / "problems.jsonl"
    write_problems(make_problems(64, seed=0), data)
    print(f"student: a tiny random Qwen3 built offline in {model}; 64 arithmetic-chain problems in {data}")
    with critic_server(out / "critic.log") as url:
        config = load_config(
            None,
            {
                "condition": "stepalign",
                "model": str(model),
                "output_dir": str(out / "run"),
                "data": {"train": str(data)},
                "critic": {"urls": [url]},
                "lora": {"r": 8, "alpha": 16},
                "max_context_tokens": 512,
                "max_steps": args.steps,
                "per_device_train_batch_size": 8,
                "max_completion_length": 48,
                "max_prompt_length": 1024,
                "learning_rate": 1e-3,
                "temperature": 1.1,
                "save_steps": args.steps,
                "logging_steps": 1,
            },
        )
        summary = run(config)
    print()
    for line in summary.lines():
        print(line)
    first = json.loads((out / "run" / "critiques.jsonl").read_text().splitlines()[0])
    critique = first["critique"]
    head = f"case {critique['case']}, pivotal step {critique['pivotal_step']}"
    print(f"\nOne rollout's critique ({head}), the teacher's context:")
    print("  " + critique["feedback"].replace("\n", "\n  "))
    print(f"\nrun folder: {out / 'run'} (config.resolved.json, critiques.jsonl, metrics.jsonl, checkpoint-*, final/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
