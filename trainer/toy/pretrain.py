"""`stepalign-train toy pretrain`: the toy solver, pretrained offline on the CPU and cached in a folder.

A small Qwen3 (~0.5M parameters, head_dim 32 so vLLM's CPU attention accepts it) and a byte-level BPE tokenizer
that splits digits, trained on the corpus of `trainer.toy.corpus` (imperfect student solutions; teacher prompts
with the real critic's feedback or the reference; wrong prefixes continued consistently). The folder is a normal
model folder (`save_pretrained`): the trainer, `eval` and `analyze` load it by path. `pretrain.json` in it records
the settings, their hash and what training measured; a later call with the same settings reuses the folder.

The settings hash also covers what the corpus is rendered with (the prompt templates' versions, the chat template
and the source of `trainer.contexts`), so a change to the prompts or the teacher contexts rebuilds the solver
instead of reusing one trained on other prompts.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from trainer.toy.corpus import Example, MixSettings, build_examples
from trainer.toy.slips import SlipSettings
from trainer.toy.world import WorldSettings

FORMAT_VERSION = 1  # bump when the corpus or the training loop changes what a given setting produces
MARKER = "pretrain.json"


@dataclass(frozen=True)
class ModelSettings:
    """The Qwen3 architecture (defaults: 0.5M parameters, as measured in ../shared/TOY-WORLD.md)."""

    hidden: int = 128
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 32  # vLLM on CPU needs >= 32
    intermediate: int = 256
    vocab_size: int = 1024  # the BPE target (the toy texts saturate it near 770); the step/answer tags on top


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that determines the pretrained solver (the cache key)."""

    world: WorldSettings = field(default_factory=WorldSettings)
    slips: SlipSettings = field(default_factory=SlipSettings)
    mix: MixSettings = field(default_factory=MixSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    examples: int = 32_000  # training examples (ignored when `minutes` is set)
    minutes: float | None = None  # train for this long instead (the number of examples then varies)
    batch_size: int = 16  # updates matter more than batch size here: see docs/toy-world-log.md
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # the cosine ends at this share of the learning rate
    chunk: int = 4096  # examples generated (and critiqued) at a time
    context_budget: int = 512  # teacher-context token budget (the trainer's max_context_tokens)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.examples < self.batch_size and self.minutes is None:
            raise ValueError(f"examples={self.examples} is fewer than one batch ({self.batch_size})")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes={self.minutes}: expected a positive duration")
        if self.batch_size < 1 or self.chunk < self.batch_size:
            raise ValueError(f"batch_size={self.batch_size}, chunk={self.chunk}: need 1 <= batch_size <= chunk")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """The cache key: these settings plus what the prompts are rendered with."""
        from shared.prompts import STUDENT, TEACHER_REFSOL, TEACHER_STEPALIGN
        from trainer import contexts
        from trainer.toy.tiny_model import CHAT_TEMPLATE

        key = {
            "settings": self.to_json(),
            "format": FORMAT_VERSION,
            "prompts": [STUDENT.version, TEACHER_STEPALIGN.version, TEACHER_REFSOL.version],
            "chat_template": CHAT_TEMPLATE,
            "contexts": hashlib.sha256(inspect.getsource(contexts).encode()).hexdigest(),
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


QUICK = PretrainSettings(examples=12_000)


def default_threads() -> int:
    """Torch threads for this machine now: its cores (at most 4) minus those other processes keep busy, at
    least 1 (two jobs at 2 threads each on 2 cores ran up to 16x slower than at 1 thread each)."""
    cores = os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(4, cores - int(busy + 0.5)))


@dataclass(frozen=True)
class PretrainResult:
    path: Path
    reused: bool
    record: dict[str, Any]


def cached(out: Path, settings: PretrainSettings) -> dict[str, Any] | None:
    """The record of a finished pretraining in `out` with these settings, or None."""
    marker = out / MARKER
    if not marker.exists() or not (out / "config.json").exists() or not (out / "tokenizer.json").exists():
        return None
    try:
        record: dict[str, Any] = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("digest") == settings.digest() else None


def build_model(tokenizer: Any, m: ModelSettings, seed: int) -> Any:
    import torch
    import transformers

    hf: Any = transformers
    eos, im_end, pad = (tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<pad>"))
    config = hf.Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=m.hidden,
        num_attention_heads=m.heads,
        num_key_value_heads=m.kv_heads,
        head_dim=m.head_dim,
        num_hidden_layers=m.layers,
        intermediate_size=m.intermediate,
        tie_word_embeddings=True,
        max_position_embeddings=2048,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    torch.manual_seed(seed)
    model = hf.Qwen3ForCausalLM(config)
    model.generation_config = hf.GenerationConfig(bos_token_id=eos, eos_token_id=[eos, im_end], pad_token_id=pad)
    return model


def encode(examples: list[Example], tokenizer: Any) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per example: prompt + target + end of turn; labels -100 outside the loss."""
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    targets = tokenizer([e.target for e in examples], add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for e, p, t, offsets in zip(examples, prompts, targets["input_ids"], targets["offset_mapping"], strict=True):
        mask = [start >= e.loss_from for start, _ in offsets]
        labels = [-100] * len(p) + [tok if keep else -100 for tok, keep in zip(t, mask, strict=True)]
        out.append(([*p, *t, im_end], [*labels, im_end]))
    return out


def batches(encoded: list[tuple[list[int], list[int]]], size: int, rng: random.Random) -> list[list[int]]:
    """Index batches of similar lengths (less padding), in random order."""
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i][0]), rng.random()))
    groups = [order[i : i + size] for i in range(0, len(order) - size + 1, size)]
    rng.shuffle(groups)
    return groups


def _collate(encoded: list[tuple[list[int], list[int]]], idx: list[int], pad: int) -> tuple[Any, Any, Any]:
    import torch

    width = max(len(encoded[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad, dtype=torch.long)
    labels = torch.full((len(idx), width), -100, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        x, y = encoded[i]
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
        mask[row, : len(x)] = 1
    return ids, labels, mask


def _loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Next-token cross-entropy over the labelled positions; the output layer runs only there (most positions
    are prompt)."""
    import torch.nn.functional as F

    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    keep = targets != -100
    return F.cross_entropy(model.lm_head(hidden[keep]).float(), targets[keep])


def _schedule(step: int, total: int, s: PretrainSettings) -> float:
    if step < s.warmup_steps:
        return (step + 1) / s.warmup_steps
    progress = min(1.0, (step - s.warmup_steps) / max(1, total - s.warmup_steps))
    return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@contextlib.contextmanager
def _critic(url: str | None, log: Path) -> Iterator[str]:
    if url:
        yield url
        return
    from shared.local_critic import local_critic

    with local_critic(log, "--engine", "checker", "--no-cache") as critic:
        yield critic.url


def pretrain(
    out: Path,
    settings: PretrainSettings | None = None,
    *,
    critic_url: str | None = None,
    rebuild: bool = False,
    threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    evaluate: Callable[[Any, Any], dict[str, Any]] | None = None,
    eval_every: int = 0,
) -> PretrainResult:
    """Pretrain the toy solver into `out` (a model folder), or reuse it if `out` holds one with these settings.
    `critic_url`: a running critic (default: a checker critic is started on 127.0.0.1 for the corpus)."""
    settings = settings or PretrainSettings()
    out = Path(out)
    record = None if rebuild else cached(out, settings)
    if record is not None:
        log(f"toy solver: reusing {out} (settings {record['digest']}, pretrained in {record['seconds']:.0f} s)")
        return PretrainResult(out, True, record)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    with _critic(critic_url, out / "critic.log") as url:
        record = _train(out, settings, url, threads, progress, log, evaluate, eval_every)
    (out / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return PretrainResult(out, False, record)


def _train(
    out: Path,
    s: PretrainSettings,
    critic_url: str,
    threads: int | None,
    progress: bool,
    log: Callable[[str], None],
    evaluate: Callable[[Any, Any], dict[str, Any]] | None = None,
    eval_every: int = 0,
) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    from trainer.toy.tokenizer import train_tokenizer

    torch.set_num_threads(threads or default_threads())
    t0 = time.monotonic()
    deadline = t0 + s.minutes * 60 if s.minutes is not None else None
    rng = random.Random(f"pretrain-{s.seed}")

    def chunk(index: int, tokenizer: Any | None) -> tuple[list[tuple[list[int], list[int]]], Any]:
        examples, tokenizer = build_examples(
            s.chunk,
            seed=s.seed * 100_003 + index,
            world=s.world,
            slips=s.slips,
            mix=s.mix,
            critic_url=critic_url,
            tokenizer=tokenizer,
            budget=s.context_budget,
            make_tokenizer=lambda texts: train_tokenizer(texts, vocab_size=s.model.vocab_size),
        )
        return encode(examples, tokenizer), tokenizer

    log(f"toy solver: writing the corpus (real prompts, the critic at {critic_url}) and training the tokenizer")
    encoded, tok = chunk(0, None)
    model = build_model(tok, s.model, s.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"toy solver: Qwen3 with {n_params / 1e6:.2f}M parameters, vocabulary {len(tok)}; "
        + (f"{s.minutes:g} minutes" if s.minutes is not None else f"{s.examples} examples")
        + f" in batches of {s.batch_size}, {torch.get_num_threads()} threads"
    )
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    total = s.examples // s.batch_size if deadline is None else 10**9  # re-estimated from speed with a deadline
    bar = tqdm(total=total if deadline is None else None, desc="pretraining", unit="step", disable=not progress)
    pad = tok.pad_token_id
    step, seen, index = 0, 0, 0
    curve: list[dict[str, float]] = []
    evals: list[dict[str, Any]] = []
    losses: list[float] = []
    running: float | None = None
    started = time.monotonic()
    while step < total:
        for idx in batches(encoded, s.batch_size, rng):
            if step >= total:
                break
            for group in opt.param_groups:
                group["lr"] = s.learning_rate * _schedule(step, total, s)
            ids, labels, mask = _collate(encoded, idx, pad)
            loss = _loss(model, ids, mask, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            seen += len(idx)
            value = float(loss.item())
            losses.append(value)
            running = value if running is None else 0.95 * running + 0.05 * value
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", examples=seen)
            if step % 25 == 0 or step == 1:
                curve.append({"step": step, "examples": seen, "loss": round(running, 4)})
            if evaluate is not None and eval_every and step % eval_every == 0:
                evals.append({"step": step, "examples": seen, **evaluate(model, tok)})
                log(f"toy solver: step {step}: {evals[-1]}")
                model.train()
            if deadline is not None and (step == 20 or step % 200 == 0):
                # The schedule's length follows the measured speed (corpus chunks included), so the cosine ends
                # near the deadline.
                per_step = (time.monotonic() - started) / step
                total = step + max(1, int((deadline - time.monotonic()) / per_step))
                bar.total = total
            if deadline is not None and time.monotonic() >= deadline:
                total = step
        if step < total:
            index += 1
            encoded, _ = chunk(index, tok)
    bar.close()
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    seconds = time.monotonic() - t0
    tail = losses[-max(1, min(20, len(losses) // 4)) :]
    final = sum(tail) / len(tail)
    log(f"toy solver: {step} steps, {seen} examples in {seconds:.0f} s; final loss {final:.3f}; saved in {out}")
    return {
        "digest": s.digest(),
        "settings": s.to_json(),
        "parameters": n_params,
        "vocabulary": len(tok),
        "steps": step,
        "examples": seen,
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "first_loss": losses[0],
        "final_loss": final,  # mean of the last steps' losses (a quarter of them, at most 20)
        "curve": curve,
        "evals": evals,
    }


def settings_from(quick: bool, **changes: Any) -> PretrainSettings:
    """The default (or quick) settings with some fields changed (None values are ignored)."""
    base = QUICK if quick else PretrainSettings()
    return replace(base, **{k: v for k, v in changes.items() if v is not None})
