"""The pull cache: blobs stored by digest, plus which digest each pulled tag last named.

Layout under the root, `oci/` in wasmhost's cache directory (`$WASMHOST_CACHE_DIR`, else
`$XDG_CACHE_HOME/wasmhost`, else `~/.cache/wasmhost`):

    blobs/sha256/<hex>              manifests, configs, layers and extracted modules
    tags/<registry>/<repo>/<tag>    the manifest digest the tag resolved to, for offline use
    tmp/<pull>/                     one pull's downloads until every digest has been checked

A pull stages its blobs in `tmp/` and moves them into `blobs/` (a rename in the same file
system) only once all of them verified, so a failed or tampered pull leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import attrs

from .._files import atomic_write
from ..cache import default_dir
from ._closing import Closing
from .content import DIGEST_RE
from .errors import DigestMismatch
from .reference import Reference


def default_cache_dir() -> Path:
    """Where pulls are cached unless the caller says otherwise."""
    return default_dir() / "oci"


def _copy(chunks: Iterable[bytes], out: IO[bytes], limit: int | None) -> tuple[str, int]:
    """Write `chunks` to `out` while hashing them; stop once more than `limit` bytes came.

    Returns the digest of what was written and how many bytes were received.
    """
    hasher, received = hashlib.sha256(), 0
    for chunk in chunks:
        received += len(chunk)
        if limit is not None and received > limit:
            break
        hasher.update(chunk)
        out.write(chunk)
    return "sha256:" + hasher.hexdigest(), received


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


@attrs.frozen
class Cache:
    """A content-addressed store rooted at `root` (created on first write)."""

    root: Path = attrs.field(factory=default_cache_dir, converter=Path)

    def blob_path(self, digest: str) -> Path:
        """Where the blob with `digest` lives (whether or not it is there)."""
        if not DIGEST_RE.fullmatch(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def verified(self, digest: str) -> Path | None:
        """The blob's path if present and intact; a corrupt copy is deleted, not returned."""
        path = self.blob_path(digest)
        try:
            if _hash_file(path) == digest:
                return path
        except FileNotFoundError:
            return None
        path.unlink(missing_ok=True)
        return None

    def tagged(self, reference: Reference) -> str | None:
        """The digest `reference`'s tag named when last pulled, if any."""
        if reference.tag is None:
            return None
        try:
            digest = self._tag_path(reference).read_text().strip()
        except FileNotFoundError:
            return None
        return digest if DIGEST_RE.fullmatch(digest) else None

    def stage(self) -> Staging:
        """Start a pull: blobs added to the staging area join the cache only on commit."""
        return Staging(self)

    def _tag_path(self, reference: Reference) -> Path:
        return self.root / "tags" / reference.registry / reference.repository / str(reference.tag)


class Staging(Closing):
    """One pull's verified blobs, held aside; a context manager that discards leftovers."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        (cache.root / "tmp").mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(dir=cache.root / "tmp", prefix="pull-"))
        self._tags: dict[Path, str] = {}

    def close(self) -> None:
        """Discard whatever is still staged (after a commit, nothing but the directory)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def path(self, digest: str) -> Path | None:
        """The staged or cached blob with `digest`, if any."""
        staged = self.directory / digest.removeprefix("sha256:")
        return staged if staged.exists() else self.cache.verified(digest)

    def add(self, digest: str, data: bytes, what: str) -> Path:
        """Stage `data`, which must hash to `digest`."""
        return self.stream(digest, len(data), [data], what)

    def stream(self, digest: str, size: int, chunks: Iterable[bytes], what: str) -> Path:
        """Stage a download, refusing it as soon as it outgrows `size` or ends mismatched."""
        with self._partial() as out:
            actual, received = _copy(chunks, out, size)
        if received != size or actual != digest:
            Path(out.name).unlink()
            if received != size:
                why = f"blob {digest} is not {size} bytes long as its descriptor says"
            else:
                why = f"blob {digest} hashes to {actual}"
            raise DigestMismatch(what, f"{why}; refusing tampered or corrupt content")
        return self._settle(out.name, digest)

    def keep(self, chunks: Iterable[bytes]) -> tuple[str, Path]:
        """Stage content found inside a blob (a module in a layer): its digest and staged path."""
        with self._partial() as out:
            digest, _ = _copy(chunks, out, None)
        return digest, self._settle(out.name, digest)

    def _partial(self) -> IO[bytes]:
        """A new file in the staging directory, for content until its digest is known."""
        return tempfile.NamedTemporaryFile(dir=self.directory, suffix=".partial", delete=False)

    def _settle(self, partial: str, digest: str) -> Path:
        final = self.directory / self.cache.blob_path(digest).name
        os.replace(partial, final)
        return final

    def tag(self, reference: Reference, digest: str) -> None:
        """Record, on commit, that `reference`'s tag names `digest`."""
        self._tags[self.cache._tag_path(reference)] = digest

    def commit(self) -> None:
        """Move every staged blob into the cache, then record the tags."""
        for staged in self.directory.iterdir():
            target = self.cache.blob_path("sha256:" + staged.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
        for path, digest in self._tags.items():
            atomic_write(path, f"{digest}\n".encode())
