"""Download an image's pinned wheels on the host, for an offline `docker build` (make test-deploy).

    python docker/wheelhouse.py critic trainer-cpu       # -> docker/wheels/critic/, docker/wheels/trainer-cpu/

Each folder gets exactly the wheels of requirements/LOCK.txt (--no-deps: the lock is complete; wheels only: the
image has no compiler); wheels left over from an older lock are deleted. pip's own cache makes a second run cheap.
The CPU locks use this machine's pip configuration, as `make install` does (it is where torch's CPU build comes
from); the GPU lock ignores it (--isolated), so that a local CPU build of torch cannot stand in for PyPI's CUDA one.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / "docker" / "wheels"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def pins(lock: Path) -> dict[str, Version]:
    out: dict[str, Version] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if m:
            out[canonicalize_name(m.group(1))] = Version(m.group(2))
    return out


def prune(folder: Path, wanted: dict[str, Version]) -> list[str]:
    """Delete wheels that are not pinned by the lock; return their names."""
    removed = []
    for wheel in sorted(folder.glob("*.whl")):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        if wanted.get(canonicalize_name(name)) != version:
            wheel.unlink()
            removed.append(wheel.name)
    return removed


def download(name: str) -> Path:
    lock = REPO / "requirements" / f"{name}.txt"
    wanted = pins(lock)
    folder = WHEELS / name
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(folder)]
    if name.endswith("-gpu"):
        cert = os.environ.get("PIP_CERT", CA_BUNDLE)
        cmd += ["--isolated", *(["--cert", cert] if Path(cert).exists() else [])]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as reqs:
        reqs.write("".join(f"{n}=={v}\n" for n, v in wanted.items()))
        reqs.flush()
        done = subprocess.run([*cmd, "-r", reqs.name], capture_output=True, text=True, check=False)
    # This machine's pip configuration names local index folders that hold only some projects: pip warns about
    # every other project. Those lines are noise; anything else pip says is shown.
    said = [x for x in (done.stdout + done.stderr).splitlines() if "is ignored: it is neither a file" not in x]
    if said:
        print("\n".join(said), file=sys.stderr)
    if done.returncode != 0:
        raise SystemExit(f"pip download for requirements/{name}.txt failed ({done.returncode})")
    removed = prune(folder, wanted)
    have = {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in folder.glob("*.whl")}
    if missing := sorted(set(wanted) - have):
        raise SystemExit(f"{folder}: no wheel for {', '.join(missing)}")
    size = sum(w.stat().st_size for w in folder.glob("*.whl")) / 2**20
    print(
        f"docker/wheels/{name}: {len(have)} wheels, {size:.0f} MiB"
        + (f" ({len(removed)} stale removed)" * bool(removed))
    )
    return folder


def build_parser() -> argparse.ArgumentParser:
    locks = sorted(p.stem for p in (REPO / "requirements").glob("*.txt") if p.stem not in ("cpu",))
    ap = argparse.ArgumentParser(prog="docker/wheelhouse.py", description=__doc__.splitlines()[0])
    ap.add_argument("locks", nargs="+", choices=locks, help="requirements/LOCK.txt -> docker/wheels/LOCK/")
    return ap


def main(argv: list[str] | None = None) -> int:
    for name in build_parser().parse_args(argv).locks:
        download(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
