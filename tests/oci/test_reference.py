"""Reference parsing: Docker's grammar, the oci:// scheme, digests; property-based round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmhost.oci import InvalidReference, Reference, parse_reference

DIGEST = "sha256:" + "ab" * 32

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_port = st.integers(1, 65535).map(str)
registries = st.one_of(
    st.builds(lambda a, b: f"{a}.{b}", _label, _label),
    st.builds(lambda a, p: f"{a}:{p}", _label, _port),
    st.builds(lambda p: f"localhost:{p}", _port),
    st.just("localhost"),
    st.builds(lambda p: f"127.0.0.1:{p}", _port),
)
_component = st.from_regex(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+){0,2}", fullmatch=True)
repositories = st.lists(_component, min_size=1, max_size=4).map("/".join)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
digests = st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)


@given(registries, repositories, st.none() | tags, st.none() | digests, st.booleans())
def test_parse_reads_every_part(
    registry: str, repository: str, tag: str | None, digest: str | None, scheme: bool
) -> None:
    text = ("oci://" if scheme else "") + f"{registry}/{repository}"
    text += f":{tag}" if tag else ""
    text += f"@{digest}" if digest else ""
    ref = parse_reference(text)
    expected_tag = tag if tag or digest else "latest"
    assert ref == Reference(registry, repository, expected_tag, digest)
    assert parse_reference(str(ref)) == ref


@given(st.text(max_size=80))
def test_parse_fails_only_with_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference as exc:
        assert str(exc).startswith(f"{text or repr(text)}: ")
        assert "\n" not in exc.why
    else:
        assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci://127.0.0.1:5000/app:v1", Reference("127.0.0.1:5000", "app", "v1")),
        ("ghcr.io/me/app", Reference("ghcr.io", "me/app", "latest")),
        (f"ghcr.io/me/app@{DIGEST}", Reference("ghcr.io", "me/app", None, DIGEST)),
        (f"ghcr.io/me/app:v2@{DIGEST}", Reference("ghcr.io", "me/app", "v2", DIGEST)),
        ("cr7258/wasm-demo-app:v1", Reference("docker.io", "cr7258/wasm-demo-app", "v1")),
        ("nginx", Reference("docker.io", "library/nginx", "latest")),
        ("localhost/app", Reference("localhost", "app", "latest")),
        ("[::1]:5000/app:v1", Reference("[::1]:5000", "app", "v1")),
    ],
)
def test_parse_examples(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty reference"),
        ("oci://", "empty reference"),
        ("ghcr.io/Me/App:v1", "repository names must be lowercase"),
        ("ghcr.io/me/app:", "invalid tag ''"),
        ("ghcr.io/me/app:-v1", "invalid tag '-v1'"),
        ("ghcr.io/me/app@sha256:abc", "invalid digest 'sha256:abc'"),
        ("ghcr.io/me/app@md5:" + "0" * 32, "invalid digest"),
        ("ghcr.io/me//app", "invalid repository"),
        ("ghcr.io/", "invalid repository ''"),
    ],
)
def test_parse_errors_name_the_reference_and_the_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse_reference(text)
    assert caught.value.what in (text, "''")
    assert why in caught.value.why


@pytest.mark.parametrize(
    ("registry", "local"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.3.2.1", True),
        ("[::1]:5000", True),
        ("registry.localhost:80", True),
        ("ghcr.io", False),
        ("127.example.com", False),
        ("[2001:db8::1]:5000", False),
    ],
)
def test_plain_http_only_for_this_machine(registry: str, local: bool) -> None:
    assert Reference(registry, "app", "v1").is_local is local


def test_docker_hub_is_served_by_registry_1() -> None:
    assert parse_reference("me/app").endpoint == "registry-1.docker.io"
    assert parse_reference("ghcr.io/me/app").endpoint == "ghcr.io"


def test_manifest_key_prefers_the_digest() -> None:
    assert parse_reference("ghcr.io/me/app:v1").manifest_key == "v1"
    assert parse_reference(f"ghcr.io/me/app:v1@{DIGEST}").manifest_key == DIGEST
