"""Pull a module by reference into the cache; fall back to the cache when the registry is down.

A reference pinned by digest that the cache already holds needs no network at all. A tag is
asked of the registry each time (tags move) and, if the registry is unreachable, resolved
through the digest it named when last pulled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import attrs

from ..module import header_problem
from . import media
from .cache import Cache, Staging
from .content import Descriptor, digest_of
from .credentials import Credentials
from .errors import NotCached, NotFound, Unreachable, UnsupportedMediaType
from .reference import Reference, parse
from .registry import RegistryClient, connect
from .unpack import Plan, choose_manifest, config_of, module_from_tar, parse_document, plan


@attrs.frozen
class PulledModule:
    """A module in the cache, and how the image it came from says to run it."""

    #: The reference, pinned to the digest of the manifest (or index) actually used.
    reference: Reference
    #: The module file, content-addressed in the cache: read it, never modify it.
    path: Path
    #: sha256 digest of the module file.
    digest: str
    #: Media type of the layer the module came from.
    media_type: str
    #: argv from an image's Entrypoint + Cmd (argv[0] names the module); empty for artifacts.
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    #: True when the registry was unreachable and the cache answered instead.
    offline: bool


class _Source(Protocol):
    def manifest(self, ref: Reference) -> tuple[bytes, str, str]: ...

    def blob(self, ref: Reference, blob: Descriptor) -> Path: ...


@attrs.frozen
class _Online:
    """Content from the registry, verified into the staging area."""

    client: RegistryClient
    staging: Staging

    def manifest(self, ref: Reference) -> tuple[bytes, str, str]:
        body, content_type, digest = self.client.get_manifest(ref)
        self.staging.add(digest, body, str(ref))
        return body, content_type, digest

    def blob(self, ref: Reference, blob: Descriptor) -> Path:
        chunks = self.client.blob_chunks(ref, blob)
        return self.staging.path(blob.digest) or self.staging.stream(blob.digest, blob.size, chunks, str(ref))


@attrs.frozen
class _Offline:
    """Content from the cache only."""

    staging: Staging

    def manifest(self, ref: Reference) -> tuple[bytes, str, str]:
        digest = ref.digest or self.staging.cache.tagged(ref)
        path = self.staging.path(digest) if digest else None
        if digest is None or path is None:
            raise NotCached(str(ref), "not in the cache")
        return path.read_bytes(), "", digest

    def blob(self, ref: Reference, blob: Descriptor) -> Path:
        path = self.staging.path(blob.digest)
        if path is None:
            raise NotCached(str(ref), f"blob {blob.digest} not in the cache")
        return path


@attrs.frozen
class _Found:
    top: str
    module: str
    media_type: str
    plan: Plan


def pull(
    ref: str | Reference,
    *,
    cache: Cache | None = None,
    insecure: bool | None = None,
    credentials: Credentials | None = None,
    progress: bool = True,
) -> PulledModule:
    """Make the module `ref` names available in the cache and describe it.

    Every manifest and blob is checked against its digest before it enters the cache, and a
    pull that fails leaves nothing behind.
    """
    reference = ref if isinstance(ref, Reference) else parse(ref)
    store = cache or Cache()
    if reference.digest:
        try:
            return _attempt(reference, store, _Offline, offline=False)
        except NotCached:
            pass
    with connect(reference, insecure=insecure, credentials=credentials, progress=progress) as client:
        try:
            return _attempt(reference, store, lambda staging: _Online(client, staging), offline=False)
        except Unreachable as unreachable:
            try:
                return _attempt(reference, store, _Offline, offline=True)
            except NotCached:
                raise unreachable from None


def resolve_module(reference: str, *, cache: Cache | None = None) -> Path:
    """The cached module file for `oci://HOST/REPO:TAG` or `...@sha256:...`, pulled if needed."""
    return pull(reference, cache=cache).path


def _attempt(
    reference: Reference,
    cache: Cache,
    source: Callable[[Staging], _Source],
    *,
    offline: bool,
) -> PulledModule:
    with cache.stage() as staging:
        found = _resolve(reference, source(staging), staging)
        if not offline and reference.digest is None:
            staging.tag(reference, found.top)
        staging.commit()
    return PulledModule(
        reference.pinned(found.top),
        cache.blob_path(found.module),
        found.module,
        found.media_type,
        found.plan.args,
        found.plan.env,
        found.plan.cwd,
        offline,
    )


def _resolve(reference: Reference, source: _Source, staging: Staging) -> _Found:
    what = str(reference)
    body, content_type, top = source.manifest(reference)
    document = parse_document(body, content_type, what)
    if document.is_index:
        entry = choose_manifest(document, what)
        body, content_type, _ = source.manifest(reference.pinned(entry.digest))
        document = parse_document(body, content_type or entry.media_type, what)
        if document.is_index:
            raise UnsupportedMediaType(what, "an index inside an index is not supported")
    config = source.blob(reference, config_of(document, what)).read_bytes()
    layout = plan(document, config, what)
    for layer in layout.layers:
        blob = source.blob(reference, layer)
        if layer.media_type in media.WASM_LAYERS:
            with blob.open("rb") as file:
                module, head = layer.digest, file.read(8)
        else:
            data = module_from_tar(layer, blob.read_bytes(), layout.path, what)
            if data is None:
                continue
            module, head = digest_of(data), data[:8]
            if staging.path(module) is None:
                staging.add(module, data, what)
        problem = header_problem(head, allow_component=True)
        if problem:
            raise UnsupportedMediaType(what, f"{layout.path or layer.digest}: {problem}")
        return _Found(top, module, layer.media_type, layout)
    raise NotFound(what, f"{layout.path or 'no *.wasm file'} is in none of the image's layers")
