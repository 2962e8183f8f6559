"""Sampling settings are the ones given, in every backend: a model's own generation_config (Qwen3 ships top_k=20,
top_p=0.95, temperature=0.6) never fills in what a run did not ask for."""

from __future__ import annotations

from pathlib import Path

from trainer.sampling import SamplingSettings, transformers_sampler
from trainer.toy.tiny_model import build_tiny_qwen3


def test_transformers_does_not_inherit_the_models_top_k(tmp_path: Path) -> None:
    from transformers import GenerationConfig

    model = build_tiny_qwen3(tmp_path / "tiny")
    config = GenerationConfig.from_pretrained(model)
    config.update(do_sample=True, top_k=1, temperature=0.6)  # what a hub model's file could say
    config.save_pretrained(model)
    sample = transformers_sampler(str(model), SamplingSettings(temperature=1.0, max_new_tokens=12, seed=0))
    [texts] = sample(["Start with 3. Add 4. What is the result?"], 8)
    # With the model's top_k=1 every sample would be the same greedy text; at T=1 without a cut they differ.
    assert len(set(texts)) >= 6, texts
    greedy = transformers_sampler(str(model), SamplingSettings(temperature=0.0, max_new_tokens=12))
    [same] = greedy(["Start with 3. Add 4. What is the result?"], 3)
    assert len(set(same)) == 1
