"""Credentials: explicit, environment token, Docker config (inline auths and real helpers)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from wasmhost.oci import Credentials, CredentialsError
from wasmhost.oci.credentials import find_credentials, from_docker_config


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _config(directory: Path, value: object) -> Path:
    path = directory / "config.json"
    path.write_text(json.dumps(value))
    return path


@pytest.fixture
def helper_bin(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real `docker-credential-test` on PATH that knows one registry."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-test"
    helper.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        "read host\n"
        'if [ "$host" = ghcr.io ]; then echo \'{"ServerURL":"ghcr.io","Username":"me","Secret":"pat"}\'; '
        "else echo 'credentials not found in native keychain'; exit 1; fi\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.mark.parametrize(
    ("auths", "registry", "expected"),
    [
        ({"ghcr.io": {"auth": _b64("me:pw")}}, "ghcr.io", Credentials("me", "pw")),
        ({"https://ghcr.io": {"auth": _b64("me:p:w")}}, "ghcr.io", Credentials("me", "p:w")),
        ({"https://index.docker.io/v1/": {"auth": _b64("me:pw")}}, "docker.io", Credentials("me", "pw")),
        ({"ghcr.io": {"username": "me", "password": "pw"}}, "ghcr.io", Credentials("me", "pw")),
        ({"ghcr.io": {"registrytoken": "tok"}}, "ghcr.io", Credentials("", "tok")),
        ({"ghcr.io": {"auth": _b64("me:pw")}}, "quay.io", None),
        ({"ghcr.io": {}}, "ghcr.io", None),
    ],
)
def test_inline_auths(tmp: Path, auths: object, registry: str, expected: Credentials | None) -> None:
    assert from_docker_config(_config(tmp, {"auths": auths}), registry) == expected


def test_credential_helpers(tmp: Path, helper_bin: Path) -> None:
    path = _config(tmp, {"credHelpers": {"ghcr.io": "test"}, "auths": {"ghcr.io": {"auth": _b64("in:line")}}})
    assert from_docker_config(path, "ghcr.io") == Credentials("me", "pat")
    store = _config(tmp, {"credsStore": "test"})
    assert from_docker_config(store, "ghcr.io") == Credentials("me", "pat")
    assert from_docker_config(store, "quay.io") is None
    missing = _config(tmp, {"credsStore": "absent-helper"})
    assert from_docker_config(missing, "ghcr.io") is None


def test_precedence_and_docker_config_env(tmp: Path) -> None:
    _config(tmp, {"auths": {"ghcr.io": {"auth": _b64("docker:pw")}}})
    environ = {"DOCKER_CONFIG": str(tmp)}
    assert find_credentials("ghcr.io", environ=environ) == Credentials("docker", "pw")
    token_only = {**environ, "WASMHOST_REGISTRY_TOKEN": "tok"}
    assert find_credentials("ghcr.io", environ=token_only) == Credentials("", "tok")
    assert find_credentials("ghcr.io", environ=token_only).is_token  # type: ignore[union-attr]
    with_user = {**token_only, "WASMHOST_REGISTRY_USERNAME": "ci"}
    assert find_credentials("ghcr.io", environ=with_user) == Credentials("ci", "tok")
    explicit = Credentials("cli", "pw")
    assert find_credentials("ghcr.io", explicit, environ=with_user) is explicit
    assert find_credentials("ghcr.io", environ={"DOCKER_CONFIG": str(tmp / "none")}) is None


def test_secrets_stay_out_of_repr() -> None:
    assert "pw" not in repr(Credentials("me", "pw"))


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "unreadable Docker config"),
        (json.dumps({"auths": {"ghcr.io": {"auth": "!!!"}}}), "is not base64 of user:password"),
        (json.dumps({"auths": {"ghcr.io": {"auth": _b64("nocolon")}}}), "is not base64 of user:password"),
    ],
)
def test_malformed_docker_config_is_named(tmp: Path, content: str, why: str) -> None:
    path = tmp / "config.json"
    path.write_text(content)
    with pytest.raises(CredentialsError) as caught:
        from_docker_config(path, "ghcr.io")
    assert caught.value.what == str(path) and why in caught.value.why
