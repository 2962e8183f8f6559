"""Turn a run's checkpoint into a plain model folder that any backend can load.

A LoRA run (the paper recipe, the toy configs) saves adapters: `checkpoint-N/` and `final/` hold
`adapter_config.json` and the adapter weights, not a model. transformers can stack such a folder on its base model,
but vLLM cannot load it at all, and a PEFT-wrapped model generates more slowly than a plain one. So `eval` merges
the adapter into its base once (`merge_and_unload`) and keeps the result beside the adapter in `merged/`, reused on
the next call while the adapter is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
MERGED = "merged"
STAMP = "stepalign_merged_from.json"


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def _fingerprint(folder: Path) -> str:
    """What the merge was made from: the adapter's files (weights and config), so a rewritten adapter re-merges."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith("adapter_")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def plain_model(folder: str | Path) -> str:
    """`folder` itself when it holds a model; for a LoRA adapter, the merged model in `folder/merged/`."""
    src = Path(folder)
    if not is_adapter(src):
        return str(folder)
    out = src / MERGED
    fingerprint = _fingerprint(src)
    stamp = out / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()).get("adapter") == fingerprint:
        return str(out)
    base = json.loads((src / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{src / ADAPTER_CONFIG}: no base_model_name_or_path, so the adapter cannot be merged")

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(src)).merge_and_unload()
    model.save_pretrained(str(out))
    # The run saves its tokenizer (and chat template) beside the adapter; fall back to the base model's.
    tokenizer_from = src if (src / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(str(tokenizer_from)).save_pretrained(str(out))
    stamp.write_text(json.dumps({"adapter": fingerprint, "base": base}))
    return str(out)
