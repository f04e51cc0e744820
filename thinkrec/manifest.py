"""The checkpoint manifest: every shipped file with its size and sha256.

``write_manifest`` lists the files under the checkpoints folder; ``verify_manifest`` stops with a
``CheckpointError`` naming the first file that is missing, truncated or altered.
"""

from __future__ import annotations

import json
from pathlib import Path

from thinkrec.errors import CheckpointError
from thinkrec.files import sha256_of

MANIFEST = "manifest.json"


def write_manifest(root: Path) -> dict:
    """List every file under ``root`` (except the manifest itself) with size and sha256."""
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[path.relative_to(root).as_posix()] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    manifest = {"version": 1, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def verify_manifest(root: Path, required_prefixes: tuple[str, ...] = ()) -> dict:
    """Check sizes and hashes of every listed file; the manifest must cover ``required_prefixes``."""
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing; the checkpoints folder is incomplete "
                              "(restore it from git or rebuild with `python -m thinkrec train-cf`)") from err
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: not a valid manifest ({err})") from err
    for prefix in required_prefixes:
        if not any(name.startswith(prefix) for name in files):
            raise CheckpointError(f"{path}: lists no file under {prefix!r}")
    for name, expected in files.items():
        file = root / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing (listed in {MANIFEST})")
        size = file.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(f"{file}: {size} bytes, the manifest says {expected['size']} (truncated or replaced)")
        if sha256_of(file) != expected["sha256"]:
            raise CheckpointError(f"{file}: contents differ from the manifest's sha256 (altered or corrupt)")
    return manifest
