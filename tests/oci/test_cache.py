"""The content-addressed cache: staged pulls commit all or nothing; corrupt entries vanish."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmhost.oci import Cache, DigestMismatch
from wasmhost.oci.cache import default_cache_dir
from wasmhost.oci.content import digest_of
from wasmhost.oci.reference import parse

REF = parse("ghcr.io/me/app:v1")


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_commit_moves_verified_blobs_and_records_the_tag(tmp: Path) -> None:
    cache = Cache(tmp)
    data = b"layer bytes"
    with cache.stage() as staging:
        staged = staging.stream(digest_of(data), len(data), [data[:4], data[4:]], "test")
        assert staged.read_bytes() == data and cache.verified(digest_of(data)) is None
        staging.tag(REF, digest_of(data))
        staging.commit()
    assert cache.verified(digest_of(data)) == cache.blob_path(digest_of(data))
    assert cache.tagged(REF) == digest_of(data)
    assert _files(tmp) == [
        Path("blobs/sha256") / digest_of(data).removeprefix("sha256:"),
        Path("tags/ghcr.io/me/app/v1"),
    ]


@pytest.mark.parametrize(
    ("chunks", "why"),
    [
        ([b"layer bytez"], "hashes to sha256:"),
        ([b"layer bytes", b"and more"], "is not 11 bytes long"),
        ([b"layer"], "is not 11 bytes long"),
    ],
)
def test_a_mismatch_leaves_nothing_behind(tmp: Path, chunks: list[bytes], why: str) -> None:
    cache, digest = Cache(tmp), digest_of(b"layer bytes")
    with cache.stage() as staging, pytest.raises(DigestMismatch) as caught:
        staging.stream(digest, 11, chunks, "ghcr.io/me/app:v1")
    assert caught.value.what == "ghcr.io/me/app:v1" and why in caught.value.why
    assert _files(tmp) == []


def test_an_uncommitted_pull_leaves_nothing_behind(tmp: Path) -> None:
    cache = Cache(tmp)
    with cache.stage() as staging:
        staging.add(digest_of(b"x"), b"x", "test")
        staging.tag(REF, digest_of(b"x"))
    assert _files(tmp) == [] and cache.tagged(REF) is None


def test_verified_deletes_a_corrupt_entry(tmp: Path) -> None:
    cache = Cache(tmp)
    with cache.stage() as staging:
        staging.add(digest_of(b"good"), b"good", "test")
        staging.commit()
    cache.blob_path(digest_of(b"good")).write_bytes(b"evil")
    assert cache.verified(digest_of(b"good")) is None
    assert _files(tmp) == []


def test_cache_lives_under_wasmhost_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    monkeypatch.setenv("WASMHOST_CACHE_DIR", str(tmp))
    assert default_cache_dir() == tmp / "oci" == Cache().root
    monkeypatch.delenv("WASMHOST_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp / "xdg"))
    assert Cache().root == tmp / "xdg" / "wasmhost" / "oci"
