"""Bearer-key authentication: constant-time comparison, and keys never appear in logs or errors."""

from __future__ import annotations

import hmac

from critic_service.errors import Unauthorized


class KeyChecker:
    """Accepts a request when no keys are configured, or when its bearer key is one of them."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> None:
        if not self._keys:
            return
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("missing 'Authorization: Bearer <key>' header")
        given = authorization[7:].strip().encode()
        # Compare against every key so the time taken does not reveal which one (or whether any) matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise Unauthorized("invalid API key")
