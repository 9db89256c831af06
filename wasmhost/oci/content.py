"""Content addressing: sha256 digests, descriptors and the JSON encoding they hash over."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from .errors import OciError

DIGEST_RE: Final = re.compile(r"sha256:[0-9a-f]{64}")


def digest_of(data: bytes) -> str:
    """The OCI digest (`sha256:<hex>`) of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def encode_json(value: object) -> bytes:
    """Compact JSON with sorted keys: the same value always gives the same bytes (and digest)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode_json_object(data: bytes) -> dict[str, Any]:
    """Parse a JSON object, raising ValueError (with a short reason) for anything else."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def string_list(section: Mapping[str, Any], key: str, error: type[OciError], what: str, name: str) -> list[str]:
    """`section[key]` as a list of strings (absent or null: empty); refused with `error` otherwise."""
    value = section.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise error(what, f"{name} is not a list of strings")
    return value


def _check_digest(_: object, __: object, value: str) -> None:
    if not DIGEST_RE.fullmatch(value):
        raise ValueError(f"unsupported digest {value!r} (want sha256:<64 hex>)")


def _pairs(value: Mapping[str, str] | tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(dict(value).items()))


@attrs.frozen
class Descriptor:
    """What a manifest says about a blob: its type, digest and size (plus annotations)."""

    media_type: str
    digest: str = attrs.field(validator=_check_digest)
    size: int = attrs.field(validator=attrs.validators.ge(0))
    annotations: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)
    #: (os, architecture), set on index entries.
    platform: tuple[str, str] | None = None

    @classmethod
    def of(cls, media_type: str, data: bytes, annotations: Mapping[str, str] | None = None) -> Descriptor:
        """Describe `data`."""
        return cls(media_type, digest_of(data), len(data), annotations or {})

    @classmethod
    def from_json(cls, value: object) -> Descriptor:
        """Read a descriptor object from a manifest or index; ValueError if malformed."""
        if not isinstance(value, dict):
            raise ValueError("descriptor is not a JSON object")
        media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
        if not isinstance(media_type, str) or not isinstance(digest, str):
            raise ValueError("descriptor lacks mediaType or digest")
        if not isinstance(size, int) or isinstance(size, bool):
            raise ValueError(f"descriptor {digest} has no integer size")
        annotations = value.get("annotations") or {}
        platform = value.get("platform")
        return cls(
            media_type,
            digest,
            size,
            {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {},
            (str(platform.get("os")), str(platform.get("architecture"))) if isinstance(platform, dict) else None,
        )

    def to_json(self) -> dict[str, object]:
        """The JSON object a manifest or index embeds."""
        value: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            value["annotations"] = dict(self.annotations)
        if self.platform:
            value["platform"] = {"os": self.platform[0], "architecture": self.platform[1]}
        return value
