"""Pull a module by reference into the cache; fall back to the cache when the registry is down.

A reference pinned by digest that the cache already holds needs no network at all. A tag is
asked of the registry each time (tags move) and, if the registry is unreachable, resolved
through the digest it named when last pulled. Sizes are capped (see `limits`): whatever a
registry sends, a pull holds at most a manifest or a config in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import attrs

from ..module import header_problem
from . import media
from .cache import Cache, Staging
from .content import Descriptor
from .credentials import Credentials
from .errors import NotCached, NotFound, Unreachable, UnsupportedMediaType
from .limits import CONFIG, MAX_MODULE_SIZE, Limit, module_size
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
    max_module_size: int = MAX_MODULE_SIZE,
) -> PulledModule:
    """Make the module `ref` names available in the cache and describe it.

    Every manifest and blob is checked against its digest before it enters the cache, and a
    pull that fails leaves nothing behind. A layer larger than `max_module_size` bytes, or
    expanding to more, is refused.
    """
    reference = ref if isinstance(ref, Reference) else parse(ref)
    store, limit = cache or Cache(), module_size(max_module_size)
    if reference.digest:
        try:
            return _attempt(reference, store, _Offline, limit, offline=False)
        except NotCached:
            pass
    with connect(reference, insecure=insecure, credentials=credentials, progress=progress) as client:
        try:
            return _attempt(reference, store, lambda staging: _Online(client, staging), limit, offline=False)
        except Unreachable as unreachable:
            try:
                return _attempt(reference, store, _Offline, limit, offline=True)
            except NotCached:
                raise unreachable from None


def resolve_module(reference: str, *, cache: Cache | None = None) -> Path:
    """The cached module file for `oci://HOST/REPO:TAG` or `...@sha256:...`, pulled if needed."""
    return pull(reference, cache=cache).path


def _attempt(
    reference: Reference,
    cache: Cache,
    source: Callable[[Staging], _Source],
    limit: Limit,
    *,
    offline: bool,
) -> PulledModule:
    with cache.stage() as staging:
        found = _resolve(reference, source(staging), staging, limit)
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


def _within(limit: Limit, blob: Descriptor, what: str, subject: str) -> Descriptor:
    """`blob`, unless its descriptor already says it is too large to fetch."""
    if blob.size > limit.size:
        raise limit.refuse(what, f"{subject} {blob.digest}", blob.size)
    return blob


def _resolve(reference: Reference, source: _Source, staging: Staging, limit: Limit) -> _Found:
    what = str(reference)
    body, content_type, top = source.manifest(reference)
    document = parse_document(body, content_type, what)
    if document.is_index:
        entry = choose_manifest(document, what)
        body, content_type, _ = source.manifest(reference.pinned(entry.digest))
        document = parse_document(body, content_type or entry.media_type, what)
        if document.is_index:
            raise UnsupportedMediaType(what, "an index inside an index is not supported")
    config = source.blob(reference, _within(CONFIG, config_of(document, what), what, "config blob")).read_bytes()
    layout = plan(document, config, what)
    for layer in layout.layers:
        blob = source.blob(reference, _within(limit, layer, what, "layer"))
        if layer.media_type in media.WASM_LAYERS:
            module, path = layer.digest, blob
        else:
            with blob.open("rb") as file:
                kept = module_from_tar(layer, file, layout.path, limit, what, staging.keep)
            if kept is None:
                continue
            module, path = kept
        with path.open("rb") as file:
            head = file.read(8)
        problem = header_problem(head)
        if problem:
            raise UnsupportedMediaType(what, f"{layout.path or layer.digest}: {problem}")
        return _Found(top, module, layer.media_type, layout)
    raise NotFound(what, f"{layout.path or 'no *.wasm file'} is in none of the image's layers")
