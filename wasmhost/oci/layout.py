"""Write a build as an OCI image layout, the directory form skopeo, umoci and ctr import read."""

from __future__ import annotations

from pathlib import Path

from . import media
from .builder import Built
from .content import Descriptor, decode_json_object, encode_json
from .errors import BuildError


def write_layout(built: Built, directory: Path) -> Path:
    """Add `built` to the layout at `directory` (created if missing), tagged with its ref.

    The index entry carries the tag as `org.opencontainers.image.ref.name` (what
    `umoci --image DIR:TAG` and `skopeo oci:DIR:TAG` look up) and the full name for containerd.
    An entry already holding the same tag is replaced; other tags stay.
    """
    tag = built.reference.tag or "latest"
    try:
        blobs = directory / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        for digest, data in {built.digest: built.manifest, **built.blobs}.items():
            path = blobs / digest.removeprefix("sha256:")
            if not path.exists():
                path.write_bytes(data)
        (directory / "oci-layout").write_bytes(encode_json({"imageLayoutVersion": "1.0.0"}))
        index_path = directory / "index.json"
        manifests = _manifests(index_path) if index_path.exists() else []
        entry = Descriptor(
            built.descriptor.media_type,
            built.digest,
            len(built.manifest),
            {media.REF_NAME_ANNOTATION: tag, media.CONTAINERD_NAME_ANNOTATION: str(built.reference)},
            built.descriptor.platform,
        ).to_json()
        kept = [m for m in manifests if _tag_of(m) != tag]
        index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": [*kept, entry]}
        index_path.write_bytes(encode_json(index))
    except OSError as exc:
        raise BuildError(str(directory), exc.strerror or "cannot write the layout") from None
    return directory


def _manifests(index_path: Path) -> list[object]:
    try:
        manifests = decode_json_object(index_path.read_bytes()).get("manifests", [])
    except ValueError as exc:
        raise BuildError(str(index_path), f"not an OCI index: {exc}") from None
    if not isinstance(manifests, list):
        raise BuildError(str(index_path), "not an OCI index: manifests is not a list")
    return manifests


def _tag_of(entry: object) -> object:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(media.REF_NAME_ANNOTATION) if isinstance(annotations, dict) else None
