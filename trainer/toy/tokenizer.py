"""The toy solver's tokenizer: byte-level BPE trained offline on the toy world's texts, digits always split.

../shared/TOY-WORLD.md measured that the tokenizer decides whether pretraining fits the CPU: with one token per
character the real prompts are ~5x longer and nothing is learned in 26 minutes. Here the pre-tokenizer only
isolates digits (`Digits(individual_digits=True)`, so a number is spelled digit by digit wherever it appears and
copying a number is copying digits) and does not split words, so BPE merges the prompts' fixed English into
phrase-long tokens: a StepAlignFB teacher example is ~170 tokens instead of ~320 with word-level pieces. The chat
and think markers are special tokens; the step and answer tags are added (not special) tokens, kept whole and
never stripped when a completion is decoded with `skip_special_tokens=True` (the critic needs them). Byte-level
BPE round-trips any text exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainer.toy.tiny_model import CHAT_TEMPLATE, END_THINK, EOS, IM_END, IM_START, PAD, THINK, UNK

MAX_STEP_TAGS = 16
VOCAB_SIZE = 1024


def tag_tokens(max_steps: int = MAX_STEP_TAGS) -> list[str]:
    """`<step_k>`, `</step_k>` for k up to `max_steps`, and the answer tags."""
    tags = [t for k in range(1, max_steps + 1) for t in (f"<step_{k}>", f"</step_{k}>")]
    return [*tags, "<answer>", "</answer>"]


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = VOCAB_SIZE) -> Any:
    """A `PreTrainedTokenizerFast` trained on `texts`, with the ChatML template of the tiny models."""
    import transformers
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    hf: Any = transformers
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    specials = [PAD, EOS, UNK, IM_START, IM_END, THINK, END_THINK]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    core.add_tokens([AddedToken(t, normalized=False, special=False) for t in tag_tokens()])
    return hf.PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        additional_special_tokens=[IM_START, IM_END, THINK, END_THINK],
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
