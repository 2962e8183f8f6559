"""The API as a newcomer meets it, against a real server process (checker engine): the OpenAPI document tells
the truth (a seeded schemathesis run over every operation finds nothing), errors say what is wrong and where,
/docs works offline, and the CLI and the answer checker fail in one clear line."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.schemas import CritiqueRequest
from tests.conftest import REPO
from tests.critic_service.fuzzing import run_schemathesis
from tests.critic_service.test_server import PROBLEM, REQUEST, WRONG
from tests.servers import ServerProcess, serve_process

FUZZ_KEY = "fuzz-key-0123456789"
JSON = "application/json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("contract")
    keys = tmp / "keys.txt"
    keys.write_text(f"fuzzer:{FUZZ_KEY}\n")
    with serve_process(tmp, "--api-keys-file", str(keys), "--cache-path", str(tmp / "cache.sqlite")) as s:
        yield s


def _post(server: ServerProcess, path: str, content: bytes, content_type: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {FUZZ_KEY}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return httpx.post(server.url + path, content=content, headers=headers)


def test_schemathesis_finds_nothing(server: ServerProcess, tmp_path: Path) -> None:
    result = run_schemathesis(server.url, tmp_path / "st", examples=25, seed=20261203, key=FUZZ_KEY)
    print(result.summary())
    assert result.exit_code == 0 and not result.failures and not result.report["errors"], result.output
    assert result.server_errors == 0
    assert result.requests >= 250
    paths = httpx.get(f"{server.url}/openapi.json", headers={"Authorization": f"Bearer {FUZZ_KEY}"}).json()["paths"]
    operations = {f"{m.upper()} {p}" for p, ops in paths.items() for m in ops}
    assert operations <= set(result.by_operation), result.summary()
    assert FUZZ_KEY not in server.output()


def test_the_schema_states_the_cross_field_rules(server: ServerProcess) -> None:
    doc = httpx.get(f"{server.url}/openapi.json", headers={"Authorization": f"Bearer {FUZZ_KEY}"}).json()
    schema = doc["components"]["schemas"]["CritiqueRequest"]
    assert [b["required"] for b in schema["allOf"][0]["oneOf"]] == [["student_solution"], ["steps"]]
    references = {tuple(b["required"]) for b in schema["allOf"][1]["anyOf"]}
    assert references == {("reference_answer",), ("reference_solution",)}
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "Retry-After" in doc["paths"]["/v1/critiques"]["post"]["responses"]["429"]["headers"]


@pytest.mark.parametrize(
    ("content", "content_type", "status", "fragment"),
    [
        (json.dumps(REQUEST).encode(), "text/plain", 415, "Content-Type must be application/json, not 'text/plain'"),
        (b"problem=x", "application/x-www-form-urlencoded", 415, "add -H 'Content-Type: application/json'"),
        (b'{\n  "problem": "x",\n  "steps": [1,,2]\n}', "application/json", 422, "at line 3, column 15"),
        (b'{"problem": "\xff"}', "application/json", 422, "not valid UTF-8 text: byte 0xff at offset 13"),
        (b"[" * 100_000, "application/json", 422, "nested too deeply"),
        (b"", "application/json", 422, "the request has no body"),
        (b'{"problem": "\\ud800", "steps": ["a"]}', JSON, 422, "problem: Input should be a valid string"),
        (json.dumps(REQUEST).encode(), None, 415, "the request has no Content-Type"),
    ],
)
def test_malformed_bodies_get_a_clear_4xx(
    server: ServerProcess, content: bytes, content_type: str | None, status: int, fragment: str
) -> None:
    r = _post(server, "/v1/critiques", content, content_type)
    assert r.status_code == status and fragment in r.json()["error"]["message"], r.text


def test_405_says_what_is_allowed(server: ServerProcess) -> None:
    r = httpx.put(f"{server.url}/v1/critiques", headers={"Authorization": f"Bearer {FUZZ_KEY}"})
    assert r.status_code == 405 and r.headers["allow"] == "POST" and "allowed: POST" in r.json()["error"]["message"]


def test_one_malformed_batch_item_gets_its_own_error(server: ServerProcess) -> None:
    items = [REQUEST, {**REQUEST, "student_solution": None}, "not an object", {**REQUEST, "request_id": "third"}]
    r = _post(server, "/v1/critiques/batch", json.dumps({"items": items}).encode(), "application/json")
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [200, 422, 422, 200]
    assert "exactly one of `student_solution`" in results[1]["error"]["message"]
    assert "valid dictionary" in results[2]["error"]["message"] and results[3]["critique"]["request_id"] == "third"


def test_docs_work_offline(server: ServerProcess) -> None:
    html = httpx.get(f"{server.url}/docs").text
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert not re.search(r"https?://", html)
    for url in urls:
        r = httpx.get(server.url + url, headers={"Authorization": f"Bearer {FUZZ_KEY}"})
        assert r.status_code == 200 and len(r.content) > 100, url
    assert httpx.get(f"{server.url}/docs/assets/../../etc/passwd").status_code == 404


CLI = [sys.executable, "-m", "critic_service.cli"]


def test_cli_missing_reference_is_one_line() -> None:
    out = subprocess.run(
        [*CLI, "critique", "--url", "http://127.0.0.1:9", "--problem", PROBLEM, "--solution", WRONG],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode != 0
    assert out.stderr.strip() == "error: give --reference-answer and/or --reference-solution"


def test_cli_survives_a_closed_pipe(server: ServerProcess) -> None:
    env_key = {"STEPALIGN_API_KEY": FUZZ_KEY, "PATH": "/usr/bin:/bin"}
    args = [*CLI, "critique", "--url", server.url, "--problem", PROBLEM, "--solution", WRONG]
    args += ["--reference-answer", "132"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env_key)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the critique is printed
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and stderr == "", stderr
    shell = f"{shlex.join(args)} | head -1"
    piped = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=REPO, env=env_key)
    assert piped.stdout == "Case D, pivotal step 2\n" and "Error" not in piped.stderr, piped.stderr


SCRIPT = """
from shared.answers import AnswerChecker
checker = AnswerChecker()
print(checker.check("\\\\frac{1}{2}", "0.5").status.value)
"""


def test_answer_checker_without_a_main_guard_says_so(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    unguarded = tmp_path / "unguarded.py"
    unguarded.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(unguarded)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode != 0 and "undecided" not in out.stdout
    assert "MainGuardError" in out.stderr and 'if __name__ == "__main__":' in out.stderr
    guarded = tmp_path / "guarded.py"
    guarded.write_text(
        "def main():\n"
        + "".join(f"    {x}\n" for x in SCRIPT.strip().splitlines())
        + ('if __name__ == "__main__":\n    main()\n')
    )
    out = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "equivalent", out.stderr


def test_every_request_field_is_in_the_schema() -> None:
    schema = CritiqueRequest.model_json_schema()
    assert set(schema["properties"]) == set(CritiqueRequest.model_fields)


def test_without_keys_the_schema_asks_for_none() -> None:
    from fastapi.testclient import TestClient

    from critic_service.app import create_app
    from critic_service.settings import Settings

    with TestClient(create_app(Settings(cache_path=None))) as client:
        doc = client.get("/openapi.json").json()
    assert "securitySchemes" not in doc.get("components", {})
    assert all("security" not in op for path in doc["paths"].values() for op in path.values())
