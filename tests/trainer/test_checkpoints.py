"""A LoRA checkpoint becomes a plain model folder: the same logits as base + adapter, loadable without peft, and
merged once (reused while the adapter is unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.checkpoints import plain_model
from trainer.sampling import SamplingSettings, make_sampler
from trainer.toy.tiny_model import build_tiny_qwen3


@pytest.fixture()
def adapter(tmp_path: Path) -> tuple[Path, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = build_tiny_qwen3(tmp_path / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))  # fmt: skip
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero, which would make the merge a no-op
            p.data.normal_(0, 0.5)
    out = tmp_path / "run" / "checkpoint-3"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return base, out


def _logits(folder: str | Path, ids: list[int]) -> object:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.inference_mode():
        return AutoModelForCausalLM.from_pretrained(str(folder))(torch.tensor([ids])).logits


def test_the_merged_model_computes_what_base_plus_adapter_computes(adapter: tuple[Path, Path]) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, ckpt = adapter
    merged = Path(plain_model(ckpt))
    assert merged == ckpt / "merged" and not (merged / "adapter_config.json").exists()
    ids = [1, 5, 9, 13, 2, 7]
    with torch.inference_mode():
        stacked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(ckpt))(
            torch.tensor([ids])
        ).logits
    plain = _logits(merged, ids)
    torch.testing.assert_close(plain, stacked, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(plain, _logits(base, ids), atol=1e-3)  # the adapter changed the model


def test_merged_once_and_again_when_the_adapter_changes(adapter: tuple[Path, Path]) -> None:
    _, ckpt = adapter
    first = Path(plain_model(ckpt))
    weights = next(first.glob("*.safetensors"))
    mtime = weights.stat().st_mtime_ns
    assert Path(plain_model(ckpt)) == first and weights.stat().st_mtime_ns == mtime  # reused
    adapter_file = ckpt / "adapter_model.safetensors"
    adapter_file.write_bytes(adapter_file.read_bytes())  # same bytes: still reused
    assert weights.stat().st_mtime_ns == mtime
    (ckpt / "adapter_config.json").write_text((ckpt / "adapter_config.json").read_text().replace('"r": 4', '"r": 4 '))
    plain_model(ckpt)
    assert next(first.glob("*.safetensors")).stat().st_mtime_ns != mtime  # a changed adapter is merged again


def test_a_plain_model_is_used_as_it_is_and_eval_samples_an_adapter(adapter: tuple[Path, Path]) -> None:
    base, ckpt = adapter
    assert plain_model(base) == str(base)
    sample = make_sampler(str(ckpt), "transformers", SamplingSettings(temperature=0.0, max_new_tokens=6))
    [texts] = sample(["Start with 3. Add 4. What is the result?"], 2)
    assert len(texts) == 2 and (ckpt / "merged" / "config.json").is_file()
