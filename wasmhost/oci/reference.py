"""Image references, `[oci://][HOST/]REPO[:TAG][@sha256:HEX]`, parsed without I/O.

The grammar is Docker's (distribution/reference): the first path component names the
registry only when it looks like a host (has a `.` or `:`, or is `localhost`); otherwise the
registry is Docker Hub and one-component names live under `library/`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Final

import attrs

from .content import DIGEST_RE
from .errors import InvalidReference

SCHEME: Final = "oci://"
DOCKER_HUB: Final = "docker.io"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])"
REGISTRY_RE: Final = re.compile(rf"{_HOST}(?::[0-9]+)?")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE: Final = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_NAME: Final = 255


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def _check(pattern: re.Pattern[str], what: str) -> Callable[[Any, Any, Any], None]:
    def check(_: object, __: object, value: str | None) -> None:
        if value is not None and not pattern.fullmatch(value):
            raise ValueError(f"invalid {what} {value!r}")

    return check


def _check_registry(_: object, __: object, value: str) -> None:
    if not REGISTRY_RE.fullmatch(value) or not (_looks_like_host(value) or value[0] == "["):
        raise ValueError(f"invalid registry host {value!r}")


@attrs.frozen
class Reference:
    """A parsed reference; at least one of `tag` and `digest` is set."""

    registry: str = attrs.field(validator=_check_registry)
    repository: str = attrs.field(validator=_check(REPOSITORY_RE, "repository"))
    tag: str | None = attrs.field(default=None, validator=_check(TAG_RE, "tag"))
    digest: str | None = attrs.field(default=None, validator=_check(DIGEST_RE, "digest"))

    def __attrs_post_init__(self) -> None:
        if self.tag is None and self.digest is None:
            raise ValueError("a reference needs a tag or a digest")
        if len(self.registry) + 1 + len(self.repository) > MAX_NAME:
            raise ValueError(f"name longer than {MAX_NAME} characters")

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def endpoint(self) -> str:
        """The host:port that serves the registry API."""
        return "registry-1.docker.io" if self.registry == DOCKER_HUB else self.registry

    @property
    def is_local(self) -> bool:
        """Whether the registry is on this machine, where plain HTTP is the norm."""
        if self.registry.startswith("["):
            host = self.registry[1 : self.registry.index("]")]
        else:
            host = self.registry.partition(":")[0]
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def manifest_key(self) -> str:
        """What goes after `/manifests/`: the digest when pinned, else the tag."""
        return self.digest or self.tag or ""

    def pinned(self, digest: str) -> Reference:
        """This reference resolved to `digest` (keeping the tag for display)."""
        return attrs.evolve(self, digest=digest)


def parse(text: str) -> Reference:
    """Parse `text`, raising InvalidReference with the offending part named."""
    rest = text.removeprefix(SCHEME)
    name, at, digest = rest.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    tag: str | None = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    first, sep, remainder = name.partition("/")
    if sep and (_looks_like_host(first) or first.startswith("[")):
        registry, repository = first, remainder
    else:
        registry = DOCKER_HUB
        repository = name if "/" in name else f"library/{name}"
    if not name:
        raise InvalidReference(text or "''", "empty reference")
    if repository != repository.lower():
        raise InvalidReference(text, "repository names must be lowercase")
    try:
        return Reference(registry, repository, tag if tag is not None or at else "latest", digest if at else None)
    except ValueError as exc:
        raise InvalidReference(text, str(exc)) from None
