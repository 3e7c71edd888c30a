"""Check a wheelhouse against its listing and write its manifest (used by wheelhouse.sh).

Usage: python scripts/wheelhouse_manifest.py DIR LISTING [--max-mib 60]

Fails (exit status 1, one line saying why) when the folder holds two versions of a package, a
wheel that is not listed, a version other than the listed one, a JAX/jaxlib/CUDA wheel (the
node's own are used), misses a listed wheel, or weighs more than ``--max-mib``. Otherwise it
writes ``DIR/MANIFEST.json`` (name, version, file, bytes and SHA-256 of every wheel; total).
Standard library only: it runs wherever the wheels are downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

FORBIDDEN = ("jax", "jaxlib", "jax-cuda", "nvidia-")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def listing(path: Path) -> dict[str, str]:
    """``{normalized name: version}`` of a ``name==version`` file (``#`` comments allowed)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            if not version:
                raise ValueError(f"{path}: {line!r} is not pinned as name==version")
            out[_norm(name)] = version.strip()
    return out


def manifest(folder: Path, want: dict[str, str], max_mib: float = 60.0) -> dict:
    """Check ``folder``'s wheels against ``want`` and return the manifest.

    Raises:
      ValueError: what is wrong with the wheelhouse, in one sentence.
    """
    rows, seen = [], {}
    for whl in sorted(Path(folder).glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        name = _norm(name)
        if name.startswith(FORBIDDEN):
            raise ValueError(f"{whl.name}: the node's own JAX and CUDA are used, never carried")
        if name in seen:
            raise ValueError(f"two versions of {name}: {seen[name]} and {whl.name}")
        seen[name] = whl.name
        if name not in want:
            raise ValueError(f"{whl.name} is not in the listing")
        if _norm(version) != _norm(want[name]):
            raise ValueError(f"{whl.name}: version {version}, the listing pins {want[name]}")
        rows.append(
            {
                "name": name,
                "version": version,
                "file": whl.name,
                "bytes": whl.stat().st_size,
                "sha256": hashlib.sha256(whl.read_bytes()).hexdigest(),
            }
        )
    missing = sorted(set(want) - set(seen))
    if missing:
        raise ValueError(f"missing wheels: {', '.join(missing)}")
    total = sum(r["bytes"] for r in rows)
    if total > max_mib * 2**20:
        raise ValueError(f"{total / 2**20:.1f} MiB is over the {max_mib:.0f} MiB limit")
    return {"python": "3.12", "platform": "manylinux x86-64", "wheels": rows, "total_bytes": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("listing", type=Path)
    ap.add_argument("--max-mib", type=float, default=60.0)
    args = ap.parse_args(argv)
    try:
        man = manifest(args.folder, listing(args.listing), args.max_mib)
    except ValueError as e:
        print(f"[wheelhouse] {e}", file=sys.stderr)
        return 1
    (args.folder / "MANIFEST.json").write_text(json.dumps(man, indent=2) + "\n")
    print(
        f"[wheelhouse] {len(man['wheels'])} wheels, {man['total_bytes'] / 2**20:.1f} MiB; "
        f"manifest {args.folder / 'MANIFEST.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
