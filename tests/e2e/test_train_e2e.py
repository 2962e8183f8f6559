"""End to end: a real `stepalign-critic serve` process (checker engine) and `stepalign-train train` processes
talking to it over HTTP; a run killed with SIGKILL mid-way resumes without repeating or skipping data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.servers import ServerProcess
from tests.trainer.runs import small_config, write_yaml

pytestmark = pytest.mark.slow
TRAIN = [sys.executable, "-m", "trainer.cli", "train"]


def _train(config_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"}
    return subprocess.run([*TRAIN, "--config", str(config_path), *extra], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=600)  # fmt: skip


def _log(run: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (run / "critiques.jsonl").read_text().splitlines()]


def _problems_by_step(run: Path) -> dict[int, list[str]]:
    steps: dict[int, list[str]] = {}
    for e in _log(run):
        critique = e["critique"]
        assert isinstance(critique, dict)
        steps.setdefault(int(e["step"]), []).append(str(critique["request_id"]).split(":")[0])  # type: ignore[arg-type]
    return steps


@pytest.mark.parametrize("condition", ["stepalign", "refsol", "grpo"])
def test_three_steps_over_http(condition: str, root: Path, critic: ServerProcess, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = write_yaml(small_config(root, condition, run, critic.url, disable_tqdm=False), tmp_path / "config.yaml")
    out = _train(cfg, "--critic-url", critic.url)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"condition {condition}, 3 steps" in out.stdout
    # For a person: a progress bar with a few numbers, not TRL's metric dicts (those are in metrics.jsonl).
    assert "{'loss'" not in out.stdout + out.stderr and "training: 100%" in out.stderr and "loss=" in out.stderr
    resolved = json.loads((run / "config.resolved.json").read_text())
    assert resolved["condition"] == condition and resolved["critic"]["urls"] == [critic.url]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]
    assert (run / "checkpoint-3" / "adapter_model.safetensors").exists()
    assert (run / "final" / "adapter_model.safetensors").exists()
    if condition == "stepalign":
        log = _log(run)
        assert len(log) == 12 and all(e["critique"] for e in log)  # 3 steps x 4 rollouts, each critiqued once
        assert "critiques by case:" in out.stdout and "distillation mask rate: 0.0%" in out.stdout
    else:
        assert not (run / "critiques.jsonl").exists()


def test_resume_after_kill_9(root: Path, critic: ServerProcess, tmp_path: Path) -> None:
    steps = 8
    reference = tmp_path / "reference"
    cfg_ref = write_yaml(small_config(root, "stepalign", reference, critic.url, max_steps=steps), tmp_path / "r.yaml")
    assert _train(cfg_ref).returncode == 0
    expected = _problems_by_step(reference)
    assert sorted(expected) == list(range(steps))

    run = tmp_path / "killed"
    cfg = write_yaml(small_config(root, "stepalign", run, critic.url, max_steps=steps), tmp_path / "k.yaml")
    proc = subprocess.Popen([*TRAIN, "--config", str(cfg)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"})  # fmt: skip
    deadline = time.monotonic() + 300
    while not (run / "checkpoint-3" / "stepalign_state.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = max(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*"))
    assert done_before < steps

    out = _train(cfg, "--resume")
    assert out.returncode == 0, out.stderr[-3000:]
    keys = [e["key"] for e in _log(run)]
    assert len(keys) == len(set(keys)) == steps * 4  # no duplicate lines, none missing
    assert _problems_by_step(run) == expected  # the same problems at every step: nothing repeated or skipped
    state = json.loads((run / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == steps


def test_two_process_cpu_run(root: Path, critic: ServerProcess, tmp_path: Path) -> None:
    # accelerate 1.15 runs `--cpu --num_processes 2` as ONE process; `--multi_gpu` on a machine without GPUs
    # starts two torchrun processes that train on the CPU with the gloo backend.
    run = tmp_path / "ddp"
    cfg = write_yaml(small_config(root, "stepalign", run, critic.url, max_steps=2), tmp_path / "ddp.yaml")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"}
    cmd = [*launcher, "-m", "trainer.cli", "train", "--config", str(cfg)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "condition stepalign, 2 steps" in out.stdout
    rank0 = (run / "critiques.jsonl").read_text().splitlines()
    rank1 = (run / "critiques.rank1.jsonl").read_text().splitlines()
    assert len(rank0) == len(rank1) == 2 * 4  # each process critiqued its own 4 rollouts per step
    # The summary counts every process's rollouts, not rank 0's alone.
    cases = out.stdout.split("critiques by case: ")[1].split(";")[0]
    assert sum(int(x.split("=")[1]) for x in cases.split(", ")) == 16, out.stdout
    assert "(0 of 16 rollouts excluded)" in out.stdout
    state = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


def test_a_critic_that_cannot_judge_the_data_stops_the_run_at_once(critic: ServerProcess, tmp_path: Path) -> None:
    # GSM8K against the checker critic (arithmetic chains only): the preflight stops the run before any model
    # loads (the model path does not even exist), with the critic's own error code, in one line.
    from tests.conftest import DATA

    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text("\n".join((DATA / "gsm8k" / "test.jsonl").read_text().splitlines()[:10]) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {tmp_path / 'no-such-model'}\ndata: {{train: {gsm}}}\noutput_dir: {tmp_path / 'run'}\n")
    out = _train(cfg, "--critic-url", critic.url)
    assert out.returncode == 3, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    [line] = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert "preflight" in line and "unsupported_problem x 2" in line and "Start with <number>" in line
