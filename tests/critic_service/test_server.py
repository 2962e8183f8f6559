"""The critic service as a real `stepalign-critic serve` process on 127.0.0.1 (checker engine), over HTTP."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.client import CriticClient, CriticError
from shared.schemas import Critique, CritiqueRequest, ErrorBody
from tests.conftest import REPO
from tests.servers import ServerProcess, critic_process

PROBLEM = "Start with 37. Add 48. Subtract 19. Multiply by 2. What is the result?"
WRONG = "<step_1>37 + 48 = 85</step_1>\n<step_2>85 - 19 = 67</step_2>\n<step_3>67 * 2 = 134</step_3>\n"
WRONG += "<answer>\\boxed{134}</answer>"
RIGHT = "Step 1: 37 + 48 = 85\nStep 2: 85 - 19 = 66\nStep 3: 66 * 2 = 132\n<answer>\\boxed{132}</answer>"
REQUEST = {"problem": PROBLEM, "reference_answer": "132", "student_solution": WRONG}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with critic_process(tmp_path_factory.mktemp("critic"), "--engine", "checker", "--no-cache") as s:
        yield s


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("keyed")
    keys = tmp / "keys.txt"
    keys.write_text("# team keys\nsecret-key-one\nsecret-key-two\n")
    env = {"STEPALIGN_MAX_BODY_BYTES": "4096", "STEPALIGN_METRICS_PUBLIC": "false"}
    with critic_process(tmp, "--api-keys-file", str(keys), "--log-level", "debug", env=env) as s:
        yield s


def test_probes_info_and_docs(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok", "detail": ""}
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ok"
    info = httpx.get(f"{server.url}/v1/info").json()
    assert info["engine"] == "checker" and info["max_attempts"] == 3 and len(info["prompt_version"]) == 12
    assert info["limits"]["max_batch_items"] == 64
    assert "swagger" in httpx.get(f"{server.url}/docs").text.lower()
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert {"/v1/critiques", "/v1/critiques/batch", "/v1/info", "/healthz", "/readyz"} <= paths.keys()


def test_critique_of_a_wrong_solution(server: ServerProcess) -> None:
    r = httpx.post(f"{server.url}/v1/critiques", json={**REQUEST, "request_id": "r-1"})
    assert r.status_code == 200, r.text
    c = Critique.model_validate(r.json())
    assert (c.case.value, c.pivotal_step, c.request_id) == ("D", 2, "r-1")
    assert [v.verdict.value for v in c.summary] == ["correct", "incorrect", "incorrect"]
    assert c.correction == "<step_2>85 - 19 = 66</step_2>\n<step_3>66 * 2 = 132</step_3>\n<answer>\\boxed{132}</answer>"
    assert c.feedback.endswith("<step_1>37 + 48 = 85</step_1>\n" + c.correction)
    assert c.answer_check.status.value == "not_equivalent"
    assert [s.text for s in c.steps.steps] == ["37 + 48 = 85", "85 - 19 = 67", "67 * 2 = 134"]
    assert all(r.passed for r in c.checks.results)
    assert c.meta.engine == "checker" and c.meta.attempts == 1


def test_case_a_and_scribe_mode(server: ServerProcess) -> None:
    r = httpx.post(f"{server.url}/v1/critiques", json={**REQUEST, "student_solution": RIGHT, "feedback_mode": "scribe"})
    c = Critique.model_validate(r.json())
    assert c.case.value == "A" and c.pivotal_step is None and c.checks.fidelity == 1.0
    assert c.feedback_mode.value == "scribe"


def test_explicit_steps(server: ServerProcess) -> None:
    body = {"problem": PROBLEM, "reference_answer": "132", "steps": ["37 + 48 = 85", "85 - 19 = 66"]}
    c = Critique.model_validate(httpx.post(f"{server.url}/v1/critiques", json=body).json())
    assert (c.case.value, c.pivotal_step) == ("C", 2)  # no final answer
    assert c.steps.format.value == "explicit"


def test_batch_keeps_order_and_isolates_failures(server: ServerProcess) -> None:
    items = [REQUEST, {**REQUEST, "problem": "Prove Fermat's last theorem."}, {**REQUEST, "student_solution": RIGHT}]
    r = httpx.post(f"{server.url}/v1/critiques/batch", json={"items": items})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["index"] for x in results] == [0, 1, 2]
    assert [x["status"] for x in results] == [200, 422, 200]
    assert results[1]["error"]["code"] == "unsupported_problem" and results[1]["critique"] is None
    assert results[0]["critique"]["case"] == "D" and results[2]["critique"]["case"] == "A"


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        ({**REQUEST, "student_solution": None}, 422, "invalid_request", "exactly one of"),
        ({**REQUEST, "feedback_mode": "verbatim"}, 422, "invalid_request", "feedback_mode"),
        ({**REQUEST, "problem": "x" * 20_001}, 422, "invalid_request", "20000"),
        ({**REQUEST, "student_solution": "<think>only thoughts</think>"}, 422, "segmentation_failed", "no steps"),
        ({**REQUEST, "problem": "What is 2 + 2?"}, 422, "unsupported_problem", "Start with"),
        ({**REQUEST, "reference_answer": "7"}, 422, "invalid_request", "not the chain's value 132"),
    ],
)
def test_errors_are_clear(server: ServerProcess, body: dict[str, Any], status: int, code: str, fragment: str) -> None:
    r = httpx.post(f"{server.url}/v1/critiques", json=body)
    assert r.status_code == status
    err = ErrorBody.model_validate(r.json()).error
    assert err.code.value == code
    assert fragment in err.message + json.dumps(err.details)


def test_malformed_json_and_unknown_route(server: ServerProcess) -> None:
    r = httpx.post(f"{server.url}/v1/critiques", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = httpx.get(f"{server.url}/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(f"{server.url}/v1/critiques")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    # The process kept working.
    assert httpx.post(f"{server.url}/v1/critiques", json=REQUEST).status_code == 200


def test_metrics(server: ServerProcess) -> None:
    httpx.post(f"{server.url}/v1/critiques", json=REQUEST)
    text = httpx.get(f"{server.url}/metrics").text
    assert re.search(r'stepalign_critiques_total\{cached="(true|false)",case="D"\} [1-9]', text)
    assert 'stepalign_errors_total{code="unsupported_problem"}' in text


def test_cache_survives_a_restart(tmp_path: Path) -> None:
    env = {"STEPALIGN_CACHE_PATH": str(tmp_path / "shared-cache.sqlite")}
    with critic_process(tmp_path, env=env) as first:
        a = httpx.post(f"{first.url}/v1/critiques", json=REQUEST).json()
        b = httpx.post(f"{first.url}/v1/critiques", json={**REQUEST, "request_id": "again"}).json()
    assert a["meta"]["cached"] is False and b["meta"]["cached"] is True and b["request_id"] == "again"
    assert a["id"] != b["id"] and a["feedback"] == b["feedback"]
    with critic_process(tmp_path, env=env) as second:
        c = httpx.post(f"{second.url}/v1/critiques", json=REQUEST).json()
        d = httpx.post(f"{second.url}/v1/critiques", json={**REQUEST, "feedback_mode": "scribe"}).json()
    assert c["meta"]["cached"] is True and d["meta"]["cached"] is False  # the mode is part of the key


def test_auth_and_body_limit(keyed: ServerProcess) -> None:
    url = f"{keyed.url}/v1/critiques"
    assert httpx.get(f"{keyed.url}/healthz").status_code == 200  # probes need no key
    assert httpx.get(f"{keyed.url}/readyz").status_code == 200
    missing = httpx.post(url, json=REQUEST)
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]["message"]
    wrong = httpx.post(url, json=REQUEST, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"
    ok = httpx.post(url, json=REQUEST, headers={"Authorization": "Bearer secret-key-two"})
    assert ok.status_code == 200
    assert httpx.get(f"{keyed.url}/metrics").status_code == 401
    assert httpx.get(f"{keyed.url}/metrics", headers={"Authorization": "Bearer secret-key-one"}).status_code == 200
    big = {**REQUEST, "problem": PROBLEM + " " * 5000}
    r = httpx.post(url, json=big, headers={"Authorization": "Bearer secret-key-one"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    log = keyed.output()
    assert "secret-key" not in log and "nope" not in log


async def test_typed_client(server: ServerProcess, keyed: ServerProcess) -> None:
    async with CriticClient(server.url) as client:
        critique = await client.critique(CritiqueRequest.model_validate(REQUEST))
        assert critique.case.value == "D"
        assert (await client.info()).engine == "checker"
        assert (await client.ready()).status == "ok"
        batch = await client.batch([CritiqueRequest.model_validate(REQUEST)] * 2)
        assert [r.status for r in batch.results] == [200, 200]
        with pytest.raises(CriticError) as info:
            await client.critique(CritiqueRequest.model_validate({**REQUEST, "problem": "Integrate x."}))
        assert info.value.status == 422 and info.value.code == "unsupported_problem" and not info.value.retryable
    async with CriticClient(keyed.url) as anonymous:
        with pytest.raises(CriticError) as info:
            await anonymous.info()
        assert info.value.status == 401
    async with CriticClient(keyed.url, api_key="secret-key-one") as authed:
        assert (await authed.info()).engine == "checker"
    async with CriticClient("http://127.0.0.1:9", connect_timeout_s=1) as dead:
        with pytest.raises(CriticError) as info:
            await dead.info()
        assert info.value.status is None and info.value.retryable


def test_cli_critique_and_info(server: ServerProcess) -> None:
    cli = [sys.executable, "-m", "critic_service.cli"]
    out = subprocess.run(
        [*cli, "critique", "--url", server.url, "--problem", PROBLEM, "--solution", WRONG, "--reference-answer", "132"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert "Case D, pivotal step 2" in out and "Step 2: Incorrect -- 85 - 19 is 66, not 67" in out
    info = subprocess.run([*cli, "info", "--url", server.url], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(info.stdout)["engine"] == "checker"
    bad = subprocess.run(
        [*cli, "critique", "--url", server.url, "--problem", "What?", "--solution", "x", "--reference-answer", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 1 and "unsupported_problem" in bad.stderr


def _readme_example() -> tuple[str, dict[str, Any]]:
    readme = (REPO / "README.md").read_text()
    m = re.search(r"<!-- curl-example -->\s*```bash\n(.*?)```\s*```json\n(.*?)```", readme, re.DOTALL)
    assert m, "README.md lost its curl example"
    return m.group(1), json.loads(m.group(2))


VOLATILE = {"id", "latency_ms"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def test_readme_curl_returns_the_documented_critique(server: ServerProcess) -> None:
    command, documented = _readme_example()
    command = command.replace("http://127.0.0.1:8000", server.url)
    args = shlex.split(command.replace("\\\n", " "))
    assert args[0] == "curl"
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert _strip(json.loads(out)) == _strip(documented)
