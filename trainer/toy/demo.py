"""`make demo` / `stepalign-train demo`: the method working on a 2-core CPU, against RefSol and GRPO, in the toy
world (arithmetic chains, where everything is exact and a 0.5M-parameter model can learn in minutes).

1. a checker critic (`stepalign-critic serve`) on 127.0.0.1, its log in the run folder;
2. the toy solver: pretrained offline (`stepalign-train toy pretrain`), or reused from its cache;
3. toy data: training problems and held-out test problems (no problem in both);
4. the context gap: greedy accuracy of the student prompt, of the StepAlignFB teacher prompt with the critic's
   feedback on the student's own wrong attempt, and of the RefSol teacher prompt;
5. training: grpo, refsol, stepalign and stepalign with the loss cut, each through the real trainer
   (`configs/toy/*.yaml`, `trainer.train.run`: the code path of `stepalign-train train`) against the critic over
   HTTP, with the same rollout budget and seed, for every seed;
6. evaluation with the real `eval` code (greedy accuracy with a bootstrap interval; Avg/Maj/Pass@k sampled);
7. `analyze` on the same wrong rollouts under both contexts: where the per-token advantage lands;
8. report.md, report.html and report.json in the run folder; the table is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Condition name -> (the config under configs/toy, overrides): the same rollout budget (32 per step) for all.
CONDITIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "GRPO": ("grpo", {}),
    "RefSol": ("refsol", {}),
    "StepAlignFB": ("stepalign", {}),
    "StepAlignFB + cut": ("stepalign", {"loss_cut_threshold": 0.5}),
}


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; `--quick` is the CI-sized version."""

    output: Path
    quick: bool = False
    seeds: int = 1
    steps: int = 80  # optimizer steps per condition (32 rollouts each), as configs/toy
    learning_rate: float | None = None  # None: the configs' own (1e-3, LoRA)
    train_problems: int = 4000
    eval_problems: int = 500
    gap_problems: int = 200
    sample_k: int = 4  # sampled evaluation (Avg/Maj/Pass@k at T=1); 0: greedy only
    analyze_rollouts: int = 24
    solver_cache: Path = Path("runs/toy-solver")
    rebuild_solver: bool = False
    threads: int | None = None
    conditions: tuple[str, ...] = tuple(CONDITIONS)
    overrides: tuple[str, ...] = ()  # `key=value` for every condition's config, as `train --set`

    @classmethod
    def quick_settings(cls, output: Path, **changes: Any) -> DemoSettings:
        base = cls(output=output, quick=True, steps=10, train_problems=400, eval_problems=100, gap_problems=100,
                   sample_k=0, analyze_rollouts=8, solver_cache=Path("runs/toy-solver-quick"))  # fmt: skip
        return replace(base, **{k: v for k, v in changes.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass
class Phase:
    """Prints what the demo is doing, a line per phase, and keeps the time each took."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def __call__(self, name: str, what: str) -> Iterator[None]:
        print(f"\n== {name}: {what}", flush=True)
        t0 = time.monotonic()
        yield
        self.seconds[name] = round(time.monotonic() - t0, 1)
        print(f"   ({self.seconds[name]:.0f} s)", flush=True)


def intro(s: DemoSettings, cached: bool) -> str:
    pretrain = "reused from its cache" if cached else ("about 3 minutes" if s.quick else "about 6 minutes")
    per_run = 0.03 if s.quick else 0.025  # minutes per optimizer step on 2 idle cores, measured
    train = len(s.conditions) * s.seeds * s.steps * per_run
    evaluate = (1 + len(s.conditions) * s.seeds) * (0.1 if s.quick else (0.5 if s.sample_k else 0.15))
    total = (0 if cached else (3 if s.quick else 6)) + train + evaluate + 1
    return (
        "StepAlign demo: does a tiny solver learn from step-aligned critic feedback?\n"
        "In a toy world of arithmetic chains (exact answers, an exact critic), on this CPU, with no downloads:\n"
        f"  1. pretrain a 0.5M-parameter solver offline ({pretrain}) and measure its context gap;\n"
        f"  2. train it {len(s.conditions)} ways ({', '.join(s.conditions)}), {s.steps} steps x 32 rollouts each, "
        f"{s.seeds} seed(s), against a real critic service over HTTP;\n"
        f"  3. evaluate every run on {s.eval_problems} held-out problems and show where the learning signal lands.\n"
        f"Expected time: about {total:.0f} minutes on 2 cores. Output: {s.output}"
    )


def solver_phase(s: DemoSettings, critic_url: str) -> tuple[Path, dict[str, Any]]:
    from trainer.toy.pretrain import pretrain, settings_from

    folder = s.solver_cache
    result = pretrain(folder, settings_from(s.quick), critic_url=critic_url, rebuild=s.rebuild_solver,
                      threads=s.threads)  # fmt: skip
    record = {k: v for k, v in result.record.items() if k not in ("curve", "settings")}
    return result.path, {"path": str(result.path), "reused": result.reused, **record}


def data_phase(s: DemoSettings) -> tuple[Path, Path]:
    from trainer.data import write_problems
    from trainer.toy.world import toy_problems

    folder = s.output / "data"
    train, test = folder / "train.jsonl", folder / "test.jsonl"
    write_problems(toy_problems(s.train_problems, seed=0, split="train"), train)
    write_problems(toy_problems(s.eval_problems, seed=1, split="test"), test)
    return train, test


def train_phase(
    s: DemoSettings, name: str, seed: int, solver: Path, train: Path, test: Path, critic_url: str
) -> dict[str, Any]:
    """One condition and seed through the real trainer: the toy config, this run's paths, nothing else."""
    from trainer.config import load_config, parse_overrides
    from trainer.train import run

    config_name, extra = CONDITIONS[name]
    out = s.output / "runs" / f"{config_name}{'-cut' if extra else ''}-seed{seed}"
    overrides: dict[str, Any] = {
        **parse_overrides(list(s.overrides)),
        "model": str(solver),
        "output_dir": str(out),
        "seed": seed,
        "data": {"train": str(train), "test": str(test)},
        "max_steps": s.steps,
        "save_steps": s.steps,
        **({"learning_rate": s.learning_rate} if s.learning_rate is not None else {}),
        **extra,
    }
    if config_name == "stepalign":
        overrides["critic"] = {"urls": [critic_url]}
    config = load_config(REPO / "configs" / "toy" / f"{config_name}.yaml", overrides)
    summary = run(config)
    for line in summary.lines():
        print(f"   {line}")
    return {"condition": name, "seed": seed, "run": str(out), "steps": summary.steps, "seconds": summary.seconds,
            "masked": summary.masked, "rollouts": summary.rollouts}  # fmt: skip


def eval_phase(s: DemoSettings, models: list[tuple[str, int, str]], test: Path, out: Path) -> dict[str, Any]:
    """Greedy accuracy (Avg@1 at T=0) of every model, and Avg/Maj/Pass@k sampled at T=1 when asked."""
    from transformers import AutoTokenizer

    from trainer.data import load_problems
    from trainer.evaluate import evaluate, write_report
    from trainer.sampling import SamplingSettings, make_sampler

    problems = load_problems(str(test))
    tok = AutoTokenizer.from_pretrained(models[0][2])

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    reports = {}
    for label, k, temperature in (("greedy", 1, 0.0), ("sampled", s.sample_k, 1.0)):
        if k == 0:
            continue
        sampling = SamplingSettings(temperature=temperature, max_new_tokens=96, batch_size=64, seed=0)
        report = evaluate(
            models,
            problems,
            k=k,
            make_sampler=lambda path, sampling=sampling: make_sampler(path, "transformers", sampling),
            count=count,
            progress=lambda name, label=label: print(f"   {label}: {name}", flush=True),
        )
        write_report(report, out / label)
        reports[label] = json.loads((out / label / "eval.json").read_text())
    return reports


def analyze_phase(s: DemoSettings, solver: Path, stepalign_run: Path, out: Path) -> dict[str, Any]:
    """Per-token advantages under both contexts on the same wrong rollouts: the initial solver's, from the
    stepalign run's first steps (case D: a wrong final answer)."""
    from trainer.analysis import analyze, load_rollouts
    from trainer.data import load_problems

    config = json.loads((stepalign_run / "config.resolved.json").read_text())
    problems = {p.id: p.to_json() for p in load_problems(config["data"]["train"])}
    lines = [json.loads(x) for x in (stepalign_run / "critiques.jsonl").read_text().splitlines() if x.strip()]
    early = [e for e in lines if e.get("critique") and e["critique"]["case"] == "D" and e["step"] < 3]
    rollouts = load_rollouts(early, problems, s.analyze_rollouts)
    report = analyze(str(solver), rollouts, out, budget=config["max_context_tokens"])
    return {"rollouts": len(rollouts), "aggregate": report["aggregate"], "pngs": [r["png"] for r in report["rollouts"]]}


def example_phase(stepalign_run: Path) -> dict[str, str] | None:
    """One of the student's own wrong rollouts and the critic's feedback on it."""
    for line in (stepalign_run / "critiques.jsonl").read_text().splitlines():
        c = json.loads(line).get("critique")
        if c and c["case"] == "D" and (c.get("pivotal_step") or 0) > 1:
            return {"student": c["steps"]["text"], "feedback": c["feedback"], "case": c["case"],
                    "pivotal_step": str(c["pivotal_step"])}  # fmt: skip
    return None


def run_demo(s: DemoSettings) -> dict[str, Any]:
    """All the phases; returns the report (also written to the run folder)."""
    import torch

    from shared.local_critic import local_critic
    from trainer.toy.pretrain import cached, default_threads, settings_from
    from trainer.toy.report import write_reports

    torch.set_num_threads(s.threads or default_threads())
    s.output.mkdir(parents=True, exist_ok=True)
    (s.output / "demo-settings.json").write_text(json.dumps(s.to_json(), indent=2) + "\n")
    print(intro(s, cached(s.solver_cache, settings_from(s.quick)) is not None and not s.rebuild_solver), flush=True)
    phase = Phase()
    report: dict[str, Any] = {"settings": s.to_json()}
    with local_critic(s.output / "critic.log", "--engine", "checker", "--no-cache") as critic:
        print(f"critic: stepalign-critic serve (checker engine) at {critic.url}, log in {s.output / 'critic.log'}")
        with phase("solver", "pretrain the toy solver offline, or reuse the cached one"):
            solver, report["solver"] = solver_phase(s, critic.url)
        with phase("data", f"{s.train_problems} training and {s.eval_problems} held-out problems"):
            train, test = data_phase(s)
        with phase("context gap", f"greedy accuracy with and without the teacher's context, {s.gap_problems} problems"):
            from trainer.toy.gap import measure_gap

            # seed 1: the first gap_problems of the held-out problems the runs are evaluated on (data_phase)
            gap = measure_gap(solver, problems=s.gap_problems, seed=1, critic_url=critic.url,
                              log=lambda x: print(f"   {x}"))  # fmt: skip
            report["context_gap"] = gap
        runs = []
        for seed in range(s.seeds):
            for name in s.conditions:
                with phase(f"train {name}, seed {seed}", f"{s.steps} steps through the real trainer"):
                    runs.append(train_phase(s, name, seed, solver, train, test, critic.url))
        report["runs"] = runs
    models = [("start", 0, str(solver))] + [(f"{r['condition']} | seed {r['seed']}", r["steps"],
                                            str(Path(r["run"]) / "final")) for r in runs]  # fmt: skip
    with phase("evaluate", f"every run on {s.eval_problems} held-out problems"):
        report["eval"] = eval_phase(s, models, test, s.output / "eval")
    stepalign_run = next((Path(r["run"]) for r in runs if r["condition"] == "StepAlignFB"), None)
    if stepalign_run is not None:
        with phase("analyze", "per-token advantages of both contexts on the same wrong rollouts"):
            report["localisation"] = analyze_phase(s, solver, stepalign_run, s.output / "analysis")
        report["example"] = example_phase(stepalign_run)
    report["phase_seconds"] = phase.seconds
    write_reports(report, s.output)
    return report


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="stepalign-train demo", description=__doc__.splitlines()[0])
    p.add_argument("--output", type=Path, help="run folder (default: runs/demo-<time>)")
    p.add_argument("--quick", action="store_true", help="the CI-sized demo (a few minutes)")
    p.add_argument("--seeds", type=int, help="seeds per condition (mean and spread in the table)")
    p.add_argument("--steps", type=int, help="optimizer steps per condition")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--eval-problems", type=int, help="held-out problems per evaluation")
    p.add_argument("--sample-k", type=int, help="samples per problem of the sampled evaluation (0: greedy only)")
    p.add_argument("--solver-cache", type=Path, help="folder of the pretrained solver (reused when it matches)")
    p.add_argument("--rebuild-solver", action="store_true", help="pretrain again even if the cache matches")
    p.add_argument("--threads", type=int, help="torch threads (default: the cores other processes leave free)")
    p.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), help="a subset of the conditions")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of every condition config (configs/toy/*.yaml), e.g. lora.r=16")  # fmt: skip
    return p


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    output = args.output or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    changes = {
        "seeds": args.seeds,
        "steps": args.steps,
        "learning_rate": args.learning_rate,
        "eval_problems": args.eval_problems,
        "sample_k": args.sample_k,
        "solver_cache": args.solver_cache,
        "rebuild_solver": args.rebuild_solver or None,
        "threads": args.threads,
        "conditions": tuple(args.conditions) if args.conditions else None,
        "overrides": tuple(args.overrides) or None,
    }
    if args.quick:
        return DemoSettings.quick_settings(output, **changes)
    return replace(DemoSettings(output=output), **{k: v for k, v in changes.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    settings = settings_from_args(args)
    report = run_demo(settings)
    print("\n" + report["table_md"])
    print(report["closing"])
    return 0


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
