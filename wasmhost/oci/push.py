"""Push a build to a registry: blobs first (skipping those already there), then the manifest."""

from __future__ import annotations

from . import media
from .builder import Built
from .content import digest_of
from .credentials import Credentials
from .errors import InvalidReference
from .reference import Reference, parse
from .registry import connect


def push(
    built: Built,
    ref: str | Reference | None = None,
    *,
    insecure: bool | None = None,
    credentials: Credentials | None = None,
    progress: bool = True,
) -> Reference:
    """Upload `built` to `ref` (default: the reference it was built for); returns it pinned.

    `insecure` None means plain HTTP for localhost only; credentials default to the
    environment token or the Docker config; progress is drawn only on a terminal.
    """
    reference = built.reference if ref is None else ref if isinstance(ref, Reference) else parse(ref)
    if reference.digest:
        raise InvalidReference(str(reference), "push to a tag; the digest comes from the content")
    with connect(reference, insecure=insecure, credentials=credentials, progress=progress) as client:
        for blob in (*built.layers, built.config):
            if not client.has_blob(reference, digest_of(blob)):
                client.upload_blob(reference, blob)
        client.put_manifest(reference, built.manifest, media.OCI_MANIFEST)
    return reference.pinned(built.digest)
