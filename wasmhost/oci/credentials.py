"""Find registry credentials the way Docker does, plus an environment token for CI.

Order: explicit credentials (`--username` + `--password-stdin`), then
`WASMHOST_REGISTRY_TOKEN` (with `WASMHOST_REGISTRY_USERNAME`: a password or personal access
token; alone: a bearer token sent as is), then the Docker config (`$DOCKER_CONFIG/config.json`
or `~/.docker/config.json`): `credHelpers[host]`, inline `auths[host]`, then `credsStore`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import attrs

from .content import decode_json_object
from .errors import CredentialsError
from .reference import DOCKER_HUB

TOKEN_ENV: Final = "WASMHOST_REGISTRY_TOKEN"
USERNAME_ENV: Final = "WASMHOST_REGISTRY_USERNAME"
#: The key `docker login` uses for Docker Hub.
DOCKER_HUB_KEY: Final = "https://index.docker.io/v1/"


@attrs.frozen(repr=False)
class Credentials:
    """A login for one registry: username and password, or a bearer token (empty username)."""

    username: str
    secret: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret=<hidden>)"

    @property
    def is_token(self) -> bool:
        """Whether `secret` is a bearer token rather than a password."""
        return not self.username


def find_credentials(
    registry: str,
    explicit: Credentials | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Credentials | None:
    """The credentials to use for `registry` (as written in references), or None."""
    if explicit is not None:
        return explicit
    token = environ.get(TOKEN_ENV)
    if token:
        return Credentials(environ.get(USERNAME_ENV, ""), token)
    config_dir = environ.get("DOCKER_CONFIG")
    path = Path(config_dir) if config_dir else Path.home() / ".docker"
    return from_docker_config(path / "config.json", registry)


def from_docker_config(path: Path, registry: str) -> Credentials | None:
    """Credentials for `registry` from a Docker `config.json`, or None if it has none."""
    try:
        config = decode_json_object(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CredentialsError(str(path), f"unreadable Docker config: {exc}") from None
    key = DOCKER_HUB_KEY if registry == DOCKER_HUB else registry
    for _, helper in _entries(config, "credHelpers", key):
        if isinstance(helper, str) and helper:
            return _from_helper(helper, key)
    for name, entry in _entries(config, "auths", key):
        found = _from_auth_entry(path, name, entry) if isinstance(entry, dict) else None
        if found is not None:
            return found
    store = config.get("credsStore")
    return _from_helper(store, key) if isinstance(store, str) and store else None


def _entries(config: dict[str, object], section: str, key: str) -> list[tuple[str, object]]:
    """The entries of `config[section]` that name the registry `key`."""
    entries = config.get(section)
    if not isinstance(entries, dict):
        return []
    return [(name, value) for name, value in entries.items() if _host_of(name) == _host_of(key)]


def _host_of(key: str) -> str:
    """`https://ghcr.io/v1/` and `ghcr.io` name the same registry in `auths`."""
    if key == DOCKER_HUB_KEY:
        return key
    return key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]


def _from_auth_entry(path: Path, name: str, entry: dict[str, object]) -> Credentials | None:
    token = entry.get("registrytoken")
    if isinstance(token, str) and token:
        return Credentials("", token)
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            username, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise CredentialsError(str(path), f"auths[{name!r}].auth is not base64 of user:password")
        return Credentials(username, password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return Credentials(user, secret)
    return None


def _from_helper(helper: str, key: str) -> Credentials | None:
    """Ask `docker-credential-<helper>`; a missing helper or unknown host means no credentials."""
    try:
        result = subprocess.run(
            [f"docker-credential-{helper}", "get"],
            input=key.encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    try:
        answer = json.loads(result.stdout)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(username, str) or not isinstance(secret, str) or not secret:
        return None
    # "<token>" marks an OAuth2 identity token, which needs a refresh-token exchange.
    return None if username == "<token>" else Credentials(username, secret)
