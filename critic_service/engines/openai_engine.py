"""The `openai` engine: any OpenAI-compatible server (`vllm serve`, SGLang) by base URL and key.

The critique schema travels as `structured_outputs` in the request body (vLLM's extension); with the server's
reasoning parser on, the constraint applies after `</think>` and the reasoning comes back separately.
Cancelling `generate` closes the HTTP request, and vLLM aborts a request whose client went away.
"""

from __future__ import annotations

from typing import Any

import httpx

from critic_service.engines.base import Generation, Job
from critic_service.errors import EngineFailure, EngineTimeout
from critic_service.settings import Settings
from shared.schemas import Usage


class OpenAIEngine:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        structured_outputs: bool = True,
        thinking_budget: bool = True,
        chat: bool = True,
        timeout_s: float = 900.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.structured_outputs = structured_outputs
        self.thinking_budget = thinking_budget
        self.chat = chat
        self.unready_reason = ""  # why `ready()` last said no, for /readyz
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
        )

    @classmethod
    def from_settings(cls, s: Settings) -> OpenAIEngine:
        if not s.openai_base_url or not s.model:
            raise ValueError("the openai engine needs --openai-base-url and --model (the served model name)")
        key = s.openai_api_key.get_secret_value() if s.openai_api_key is not None else None
        return cls(
            s.openai_base_url,
            s.model,
            api_key=key,
            structured_outputs=s.structured_outputs,
            thinking_budget=s.openai_thinking_budget,
            timeout_s=s.request_timeout_s,
        )

    async def start(self) -> None:
        return None

    async def ready(self) -> bool:
        try:
            response = await self._http.get("/models", timeout=5.0)
        except httpx.HTTPError as exc:
            self.unready_reason = f"upstream {self.base_url} is unreachable: {type(exc).__name__}: {exc}"
            return False
        if response.status_code != 200:
            self.unready_reason = f"upstream {self.base_url}/models answered {response.status_code}"
            return False
        self.unready_reason = ""
        return True

    async def close(self) -> None:
        await self._http.aclose()

    def _body(self, job: Job) -> dict[str, Any]:
        s = job.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "seed": s.seed,
        }
        # vLLM's extensions to the OpenAI schema; other servers ignore unknown fields or reject them loudly.
        if s.top_k > 0:
            body["top_k"] = s.top_k
        if s.min_p > 0:
            body["min_p"] = s.min_p
        if s.repetition_penalty != 1.0:
            body["repetition_penalty"] = s.repetition_penalty
        if self.thinking_budget and s.thinking_budget is not None:
            body["thinking_token_budget"] = s.thinking_budget
        if self.structured_outputs and job.schema_regex:
            body["structured_outputs"] = {"regex": job.schema_regex}
        if self.chat:
            body["messages"] = job.messages
        else:
            body["prompt"] = "\n\n".join(m["content"] for m in job.messages)
        return body

    async def generate(self, job: Job) -> Generation:
        path = "/chat/completions" if self.chat else "/completions"
        url = f"{self.base_url}{path}"
        try:
            response = await self._http.post(path, json=self._body(job))
        except httpx.TimeoutException as exc:
            raise EngineTimeout(f"{url} timed out", details=[{"upstream": url, "error": type(exc).__name__}]) from exc
        except httpx.TransportError as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise EngineFailure(
                f"the upstream {url} cannot be reached: {error}", details=[{"upstream": url, "error": error}]
            ) from exc
        if response.status_code != 200:
            raise EngineFailure(
                f"{url} answered {response.status_code}: {response.text[:500]}",
                details=[{"upstream": url, "status": response.status_code, "body": response.text[:500]}],
            )
        data = response.json()
        choice = data["choices"][0]
        if self.chat:
            message = choice.get("message") or {}
            text = message.get("content") or ""
            reasoning = message.get("reasoning_content") or message.get("reasoning")
        else:
            text, reasoning = choice.get("text") or "", None
        usage = data.get("usage") or {}
        details = usage.get("completion_tokens_details") or {}
        return Generation(
            text=text,
            reasoning=reasoning,
            usage=Usage(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                reasoning_tokens=int(details.get("reasoning_tokens") or 0),
            ),
        )
