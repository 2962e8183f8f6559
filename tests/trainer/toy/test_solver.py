"""The toy solver: its tokenizer, the corpus rendered through the project's real prompts and critic, a tiny cached
pretraining, and the context gap measured from the model's own generations."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.arithmetic import parse_chain
from tests.servers import ServerProcess
from trainer.contexts import teacher_context
from trainer.data import Problem
from trainer.toy import gap as gap_module
from trainer.toy.corpus import MixSettings, build_examples, draft_examples, student_text
from trainer.toy.gap import measure_gap, solution_part
from trainer.toy.pretrain import MARKER, ModelSettings, PretrainSettings, pretrain
from trainer.toy.slips import SlipSettings, write_attempt
from trainer.toy.tokenizer import train_tokenizer
from trainer.toy.world import WorldSettings, reference_solution, student_solution, toy_chains

TINY = PretrainSettings(
    model=ModelSettings(hidden=64, layers=1, heads=2, kv_heads=1, head_dim=32, intermediate=128),
    examples=192,
    batch_size=16,
    chunk=96,
    learning_rate=5e-3,
    warmup_steps=2,
)


@pytest.fixture(scope="module")
def solver(critic: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    out = tmp_path_factory.mktemp("toy") / "solver"
    lines: list[str] = []
    result = pretrain(out, TINY, critic_url=critic.url, threads=1, progress=False, log=lines.append)
    yield out, result


def test_the_tokenizer_splits_digits_keeps_tags_whole_and_round_trips() -> None:
    chains = toy_chains(300, seed=0, split="train")
    tok = train_tokenizer([student_solution(c) for c in chains] + [c.problem_text() for c in chains], vocab_size=300)
    c = parse_chain("Start with 49. Multiply by 2. Add 9. Subtract 5. Multiply by 3.")
    for text in [student_text(tok, c.problem_text()), reference_solution(c), "Grüße, 12½ × 7 ≠ 3\n\n\t!"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    pieces = tok.convert_ids_to_tokens(tok(reference_solution(c), add_special_tokens=False)["input_ids"])
    assert "<step_2>" in pieces and "</answer>" in pieces
    numbers = [p for p in pieces if any(ch.isdigit() for ch in p) and not p.startswith(("<step_", "</step_"))]
    assert numbers and all(len(p) == 1 for p in numbers), numbers  # one digit per token
    # The chat markers are special tokens; the step tags are not, so a decoded completion keeps them.
    prompt_pieces = tok.convert_ids_to_tokens(tok(student_text(tok, "Start with 1. Add 2."))["input_ids"])
    assert prompt_pieces[0] == "<|im_start|>" and "<think>" in prompt_pieces
    ids = tok(student_solution(c) + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == student_solution(c)


def test_the_corpus_uses_the_real_prompts_and_the_real_critics_feedback(critic: ServerProcess) -> None:
    from trainer.train import dataset_rows

    world, slips, mix = WorldSettings(), SlipSettings(), MixSettings()
    examples, tok = build_examples(
        160,
        seed=5,
        world=world,
        slips=slips,
        mix=mix,
        critic_url=critic.url,
        tokenizer=None,
        budget=512,
        make_tokenizer=train_tokenizer,
    )
    drafts = draft_examples(160, seed=5, world=world, slips=slips, mix=mix)
    assert {e.kind for e in examples} == {"student", "feedback", "reference", "wrong_prefix"}
    for d, e in zip(drafts, examples, strict=True):
        problem = d.chain.problem_text()
        if e.kind == "student":
            row = dataset_rows([Problem(id="x", problem=problem, answer="0")], tok, thinking=False)[0]
            assert e.prompt == row["prompt"] and e.loss_from == 0
        elif e.kind == "feedback":
            # The teacher prompt holds the critic's feedback on an attempt; the target is the solution it shows.
            assert "=== Feedback Begin ===\nSummary:\nStep 1:" in e.prompt and e.prompt.endswith("<think>\n")
            feedback = e.prompt.split("=== Feedback Begin ===\n")[1].split("\n=== Feedback End ===")[0]
            expected = teacher_context("stepalign", problem=problem, tokenizer=tok, budget=512, thinking=True,
                                       feedback=feedback)  # fmt: skip
            assert e.prompt == expected.text
            assert e.target == solution_part(feedback)
        elif e.kind == "reference":
            assert reference_solution(d.chain) in e.prompt and e.loss_from == 0
        else:
            # A wrong attempt: no loss up to and including its first wrong character.
            assert 0 < e.loss_from < len(e.target)
            assert e.target[: e.loss_from - 1] == student_solution(d.chain)[: e.loss_from - 1] or "+" in e.target


def test_pretraining_learns_and_is_cached(solver: tuple[Path, Any], critic: ServerProcess) -> None:
    out, first = solver
    record = first.record
    assert not first.reused and record["steps"] == TINY.examples // TINY.batch_size
    assert record["final_loss"] < record["first_loss"] - 1.0, record["curve"]
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists() and (out / MARKER).exists()
    weights = next(out.glob("*.safetensors"))
    stamp = weights.stat().st_mtime_ns
    again = pretrain(out, TINY, critic_url=critic.url, threads=1, progress=False, log=lambda _: None)
    assert again.reused and again.record["digest"] == record["digest"] and weights.stat().st_mtime_ns == stamp
    forced = pretrain(out, TINY, critic_url=critic.url, threads=1, progress=False, log=lambda _: None, rebuild=True)
    assert not forced.reused and weights.stat().st_mtime_ns != stamp
    changed = TINY.__class__(**{**TINY.__dict__, "seed": 1})
    other = pretrain(out, changed, critic_url=critic.url, threads=1, progress=False, log=lambda _: None)
    assert not other.reused and other.record["digest"] != record["digest"] == TINY.digest()


def test_the_gap_of_an_untrained_solver_is_measured_from_its_generations(
    solver: tuple[Path, Any], critic: ServerProcess
) -> None:
    out, _ = solver
    gap = measure_gap(out, problems=24, critic_url=critic.url, max_new_tokens=48)
    assert gap["problems"] == 24 and gap["student"]["correct"] + gap["student"]["wrong"] == 24
    assert gap["student"]["accuracy"] < 0.1 and gap["refsol"]["accuracy"] < 0.1
    fb = gap["feedback"]
    assert fb["attempts"] + fb["critic_errors"] == gap["student"]["wrong"]
    assert fb["correct"] <= fb["attempts"] and fb["exact_copies"] <= fb["attempts"]
    assert gap["feedback_all"]["correct"] == gap["student"]["correct"] + fb["correct"]


def test_the_gap_counts_what_the_model_writes(
    solver: tuple[Path, Any], critic: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for generation (for speed): the student is wrong on every other problem, the teacher with
    feedback writes the correct solution, the teacher with the reference copies it."""
    out, _ = solver
    rng = random.Random(0)
    chains = {c.problem_text(): c for c in toy_chains(20, seed=0, split="test")}

    def write(model: Any, tok: Any, prompts: list[str], **_: Any) -> list[str]:
        texts = []
        for p in prompts:
            problem = next(k for k in chains if k in p)
            c = chains[problem]
            if "=== Feedback Begin ===" in p:
                texts.append(student_solution(c))
            elif "=== Reference Solution Begin ===" in p:
                texts.append(reference_solution(c))
            else:
                odd = list(chains).index(problem) % 2 == 1
                texts.append(
                    write_attempt(c, rng, SlipSettings(), force_wrong=odd).text if odd else student_solution(c)
                )
        return texts

    monkeypatch.setattr(gap_module, "generate", write)
    gap = measure_gap(out, problems=20, critic_url=critic.url)
    assert gap["student"] == {"correct": 10, "wrong": 10, "accuracy": 0.5}
    assert gap["feedback"]["correct"] == gap["feedback"]["exact_copies"] == gap["feedback"]["attempts"] == 10
    assert gap["feedback_all"]["accuracy"] == 1.0 and gap["gap_points"] == 50.0
    assert gap["refsol"]["accuracy"] == 1.0 and gap["refsol"]["exact_copies_of_reference"] == 20
    merged = gap["refsol"]["problems_where_derivations_differ"]
    assert gap["refsol"]["outputs_with_merged_steps"] == merged > 0
