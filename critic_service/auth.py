"""Named bearer keys: parsed from `name:key` entries, compared in constant time, and known by their name only.

A key never appears in a log line, an error message or a metric: everything downstream sees the key's name.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from critic_service.errors import Unauthorized

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
ANONYMOUS = "anonymous"  # the caller's name when the service runs without keys


@dataclass(frozen=True)
class ApiKey:
    name: str
    secret: str

    def __repr__(self) -> str:  # never print the secret, even in a debugger or a traceback
        return f"ApiKey(name={self.name!r}, secret='***')"


class KeyFormatError(ValueError):
    """A malformed key entry; the message names the entry's source and position, never its text."""


def parse_key_entries(entries: list[tuple[str, str]]) -> list[ApiKey]:
    """`(where, entry)` pairs -> named keys. An entry is `name:key`, or a bare key, which is named `key-N` by its
    position N among all keys. Names must be unique and so must keys."""
    keys: list[ApiKey] = []
    for where, raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        name, sep, secret = entry.partition(":")
        name = name.strip()
        if not sep:
            name, secret = f"key-{len(keys) + 1}", entry
        elif not NAME.fullmatch(name):
            raise KeyFormatError(f"{where}: a key's name must match {NAME.pattern} (write name:key)")
        secret = secret.strip()
        if not secret:
            raise KeyFormatError(f"{where}: key {name!r} is empty")
        if any(k.name == name for k in keys):
            raise KeyFormatError(f"{where}: key name {name!r} is used twice")
        if any(hmac.compare_digest(k.secret.encode(), secret.encode()) for k in keys):
            raise KeyFormatError(f"{where}: key {name!r} repeats the key of another entry")
        keys.append(ApiKey(name, secret))
    return keys


class KeyChecker:
    """Accepts every request when no keys are configured (as `anonymous`); otherwise only a listed bearer key."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = [(k.name, k.secret.encode()) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._keys]

    def check(self, authorization: str | None) -> str:
        """The name of the caller's key, or `Unauthorized`."""
        if not self._keys:
            return ANONYMOUS
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized("missing 'Authorization: Bearer <key>' header")
        token = given.strip().encode("utf-8", "surrogateescape")
        # Compare against every key so the time taken does not reveal which one (or whether any) matched.
        found: str | None = None
        for name, key in self._keys:
            if hmac.compare_digest(token, key) and found is None:
                found = name
        if found is None:
            raise Unauthorized("invalid API key")
        return found
