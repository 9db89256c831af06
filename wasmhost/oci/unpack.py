"""Find the module in pulled content: which manifest, which layer, which file.

Handles OCI and Docker manifests and indexes; layers that are the module itself
(`application/wasm`, `application/vnd.wasm.content.layer.v1+wasm`,
`application/vnd.module.wasm.content.layer.v1+wasm`); and image layers (tar, tar+gzip) holding
it, located through the image's entrypoint or, without one, as the only `*.wasm` file. Layers
are read as streams, decompressed a piece at a time and never past the module size limit.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any, Final, Protocol, TypeVar

import attrs

from . import media
from .content import Descriptor, decode_json_object, string_list
from .errors import RegistryError, TooLarge, UnsupportedMediaType
from .limits import Limit

CHUNK: Final = 64 * 1024
_Kept = TypeVar("_Kept")

#: Platforms, best first, that a Wasm entry of a multi-platform index may declare.
WASM_PLATFORMS = (("wasi", "wasm"), ("wasip1", "wasm"), ("wasip2", "wasm"), ("wasi", "wasm32"))


@attrs.frozen
class Document:
    """A parsed manifest or index."""

    media_type: str
    body: dict[str, Any] = attrs.field(eq=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in media.INDEXES


@attrs.frozen
class Plan:
    """Where the module is and how the image says to run it."""

    #: Layers to search, in order; a raw Wasm layer is the module itself.
    layers: tuple[Descriptor, ...]
    #: The module's absolute path inside tar layers, or None to take the only `*.wasm` file.
    path: str | None
    #: argv as the image's Entrypoint + Cmd give it, argv[0] naming the module.
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str


def parse_document(data: bytes, content_type: str, what: str) -> Document:
    """Parse a manifest or index, refusing media types we cannot follow."""
    try:
        body = decode_json_object(data)
    except ValueError as exc:
        raise RegistryError(what, f"manifest is {exc}") from None
    declared = body.get("mediaType")
    if isinstance(declared, str) and declared:
        kind = declared
    elif content_type in media.MANIFESTS | media.INDEXES:
        kind = content_type
    else:
        kind = media.OCI_INDEX if "manifests" in body else media.OCI_MANIFEST
    if kind not in media.MANIFESTS | media.INDEXES:
        raise UnsupportedMediaType(what, f"unsupported manifest media type {kind}")
    return Document(kind, body)


def choose_manifest(index: Document, what: str) -> Descriptor:
    """The Wasm entry of a multi-platform index (or its only entry)."""
    entries = [_descriptor(entry, what) for entry in index.body.get("manifests") or []]
    for platform in WASM_PLATFORMS:
        for entry in entries:
            if entry.platform == platform and entry.media_type in media.MANIFESTS:
                return entry
    if len(entries) == 1:
        return entries[0]
    found = ", ".join(sorted({"/".join(e.platform) for e in entries if e.platform})) or "none"
    raise UnsupportedMediaType(what, f"index has no wasi/wasm manifest (platforms: {found})")


def config_of(manifest: Document, what: str) -> Descriptor:
    """The manifest's config descriptor."""
    return _descriptor(manifest.body.get("config"), what)


def plan(manifest: Document, config: bytes, what: str) -> Plan:
    """Decide which layers hold the module and read argv, env and cwd from an image config."""
    layers = [_descriptor(layer, what) for layer in manifest.body.get("layers") or []]
    raw = [layer for layer in layers if layer.media_type in media.WASM_LAYERS]
    if len(raw) == 1:
        return Plan((raw[0],), None, (), (), "/")
    if len(raw) > 1:
        raise UnsupportedMediaType(what, f"{len(raw)} Wasm layers; expected exactly one")
    for layer in layers:
        if layer.media_type not in media.TAR_LAYERS:
            raise UnsupportedMediaType(what, f"unsupported layer media type {layer.media_type}")
    if not layers:
        raise UnsupportedMediaType(what, "manifest has no layers")
    runtime = _runtime_config(config, what)
    args = tuple(_strings(runtime, "Entrypoint", what) + _strings(runtime, "Cmd", what))
    cwd = str(runtime.get("WorkingDir") or "/")
    pairs = (item.partition("=") for item in _strings(runtime, "Env", what))
    env = tuple((key, value) for key, sep, value in pairs if sep)
    path = posixpath.normpath(posixpath.join(cwd, args[0])) if args else None
    return Plan(tuple(reversed(layers)), path, args, env, cwd)


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Capped(io.RawIOBase):
    """A stream that fails with `refuse()` once more than `limit` bytes have been read from it."""

    def __init__(self, source: _Readable, limit: int, refuse: Callable[[], TooLarge]) -> None:
        super().__init__()
        self._source, self._left, self._refuse = source, limit, refuse

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        wanted = self._left + 1 if size < 0 else min(size, self._left + 1)
        data = self._source.read(wanted)
        if len(data) > self._left:
            raise self._refuse()
        self._left -= len(data)
        return data


def module_from_tar(
    layer: Descriptor,
    blob: IO[bytes],
    path: str | None,
    limit: Limit,
    what: str,
    keep: Callable[[Iterator[bytes]], _Kept],
) -> _Kept | None:
    """The module file in one tar layer: the file at `path`, else the only `*.wasm` file.

    The module's bytes go to `keep` as the layer is read, and what `keep` returns (where it
    stored them) is the result. The layer is refused once its tar stream passes `limit`,
    however well it compresses.
    """
    source: _Readable = blob
    if media.TAR_LAYERS[layer.media_type]:
        source = gzip.GzipFile(fileobj=blob, mode="rb")
    stream = _Capped(source, limit.size, lambda: limit.refuse(what, f"layer {layer.digest}", expands=True))
    found: dict[str, _Kept] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = "/" + posixpath.normpath(member.name.lstrip("/"))
                wanted = name == path if path else name.endswith(".wasm")
                if not wanted:
                    continue
                if not member.isfile():
                    raise UnsupportedMediaType(what, f"{name} in the image is not a regular file")
                extracted = tar.extractfile(member)
                if extracted is not None:
                    found[name] = keep(_pieces(extracted))
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise RegistryError(what, f"layer {layer.digest} is not valid gzip ({exc})") from None
    except tarfile.TarError as exc:
        raise RegistryError(what, f"layer {layer.digest} is not a valid tar ({exc})") from None
    if len(found) > 1:
        names = ", ".join(sorted(found))
        raise UnsupportedMediaType(what, f"several modules ({names}) and no entrypoint naming one")
    return next(iter(found.values()), None)


def _pieces(file: IO[bytes]) -> Iterator[bytes]:
    while chunk := file.read(CHUNK):
        yield chunk


def _descriptor(value: object, what: str) -> Descriptor:
    try:
        return Descriptor.from_json(value)
    except ValueError as exc:
        raise RegistryError(what, f"malformed manifest: {exc}") from None


def _runtime_config(config: bytes, what: str) -> dict[str, Any]:
    try:
        runtime = decode_json_object(config).get("config") or {}
    except ValueError as exc:
        raise RegistryError(what, f"image config is {exc}") from None
    if not isinstance(runtime, dict):
        raise RegistryError(what, "image config: config is not an object")
    return runtime


def _strings(runtime: dict[str, Any], key: str, what: str) -> list[str]:
    return string_list(runtime, key, RegistryError, what, f"image config: {key}")
