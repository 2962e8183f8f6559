"""Print the pins of a lock file that this Python environment lacks, for images built on top of another stack.

The all-in-one critic image starts from the official vLLM image, whose own stack (CUDA, torch, vllm, fastapi,
pydantic, transformers) is the authority: the critic's lock only adds what that image lacks, at the lock's versions.
Build tools (setuptools) are always printed: the project is built with them, and the lock's version is known to
build it. Packages the image has at another version than the lock are reported on standard error (the build log),
and `pip check` after the install proves that the two stacks agree.

    python3 docker/missing_pins.py requirements/critic.txt > missing.txt
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

ALWAYS = {"setuptools"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_pins(lock: Path) -> tuple[list[str], list[str]]:
    """(pins to install, notes about installed packages at other versions than the lock)."""
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    pins: list[str] = []
    notes: list[str] = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if not m:
            continue
        name, version = canonical(m.group(1)), m.group(2)
        have = installed.get(name)
        if have is None or name in ALWAYS:
            pins.append(line.strip())
        elif have != version:
            notes.append(f"{name}: keeping the base image's {have} (lock: {version})")
    return pins, notes


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: missing_pins.py LOCKFILE", file=sys.stderr)
        return 2
    pins, notes = missing_pins(Path(argv[0]))
    for note in notes:
        print(note, file=sys.stderr)
    print("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
