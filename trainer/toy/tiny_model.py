"""A tiny random Qwen3 model with a character-level tokenizer, built offline for tests.

No machine of ours can reach a model hub, so tests that need a real model (vLLM on CPU, TRL) build one here:
a character-level `tokenizers` WordLevel tokenizer wrapped in `PreTrainedTokenizerFast` (ChatML chat template
with Qwen3's `enable_thinking` switch) and a randomly initialised two-layer `Qwen3ForCausalLM` (~1 MB on disk).
`build_tiny_qwen3(folder)` saves both with `save_pretrained` and returns the folder; it is idempotent.

Heavy libraries (torch, transformers, tokenizers) are imported inside the function so that importing this
module stays cheap.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

PAD = "<pad>"
EOS = "<|endoftext|>"
UNK = "<unk>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK = "<think>"
END_THINK = "</think>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, EOS, UNK, IM_START, IM_END, THINK, END_THINK)

# Common unicode characters in maths text, beyond printable ASCII.
MATH_CHARS = "×÷−±≤≥≠≈∞√∑∏∫π°·…→←⇒⇔∈∉⊂⊆∪∩∀∃¬∧∨αβγδεθλμσφω²³½¼¾′″"

# ChatML with Qwen3's `enable_thinking` switch. With `enable_thinking=False` the generation prompt carries an empty
# think block, as Qwen3's; otherwise (the default) it opens one, as Qwen3-Thinking-2507/QwQ do, because a random
# model never writes `<think>` itself and vLLM's `thinking_token_budget` only counts tokens after a `<think>`.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{ '<think>\\n\\n</think>\\n\\n' }}"
    "{%- else -%}"
    "{{ '<think>\\n' }}"
    "{%- endif -%}"
    "{%- endif -%}"
)

MARKER = "tiny_qwen3.json"


def vocabulary() -> list[str]:
    """Special tokens first, then every printable ASCII character (with newline and tab) and the maths chars."""
    chars: list[str] = []
    for ch in string.printable + "\n\t" + MATH_CHARS:
        if ch not in chars and ch not in "\r\x0b\x0c":
            chars.append(ch)
    return [*SPECIAL_TOKENS, *chars]


def build_tiny_qwen3(folder: Path, *, seed: int = 0) -> Path:
    """Build (once) a tiny random Qwen3ForCausalLM and its char-level tokenizer in `folder`; return `folder`."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.exists() and (folder / "config.json").exists() and (folder / "tokenizer.json").exists():
        return folder

    import torch
    import transformers
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    # transformers' constructors are untyped; going through Any keeps a strict mypy quiet.
    hf: Any = transformers

    vocab = {token: i for i, token in enumerate(vocabulary())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
    core.decoder = decoders.Fuse()
    tokenizer = hf.PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=[IM_START, IM_END, THINK, END_THINK],
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )

    eos_id, im_end_id, pad_id = vocab[EOS], vocab[IM_END], vocab[PAD]
    config = hf.Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        num_hidden_layers=2,
        intermediate_size=256,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    torch.manual_seed(seed)
    model = hf.Qwen3ForCausalLM(config)
    model.generation_config = hf.GenerationConfig(
        bos_token_id=eos_id, eos_token_id=[eos_id, im_end_id], pad_token_id=pad_id
    )

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    marker.write_text(json.dumps({"seed": seed, "vocab_size": len(tokenizer)}) + "\n", encoding="utf-8")
    return folder
