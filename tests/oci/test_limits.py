"""A hostile registry cannot make a pull exhaust memory: every manifest, config and layer has a
hard cap, and a refused pull leaves nothing in the cache.

The memory bounds are measured on a real `wasmhost oci pull` process (its peak RSS from wait4).
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.oci.conftest import Answer, Hostile, Registry, image_config, publish, run_measured
from wasmhost.oci import Cache, Credentials, Format, TooLarge, build, pull, push
from wasmhost.oci.content import Descriptor, digest_of, encode_json
from wasmhost.oci.media import LAYER_TAR_GZIP, OCI_CONFIG, OCI_MANIFEST, WASM_CONFIG_V0, WASM_LAYER

MiB = 1 << 20
#: Peak RSS a pull may reach whatever the registry sends: the interpreter, wasmtime and
#: buffers. Before the caps, the 510 KB bomb took 1.09 GB and a 600 MB manifest 1.28 GB.
RSS_BOUND = 200 * MiB
HEADER = b"\0asm\x01\0\0\0"


def _files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A 510 KB tar+gzip layer holding /app.wasm: a module header then 512 MiB of zeros."""
    size = 512 * MiB
    info = tarfile.TarInfo("app.wasm")
    info.size, info.mode = size, 0o755
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(info.tobuf(format=tarfile.USTAR_FORMAT) + HEADER)]
    zeros = bytes(MiB)
    parts += [compressor.compress(zeros) for _ in range(size // MiB)]
    parts += [compressor.compress(zeros[: 2 * tarfile.BLOCKSIZE - len(HEADER)]), compressor.flush()]
    return b"".join(parts)


def test_a_gzip_bomb_layer_is_refused_in_bounded_memory(bomb: bytes, registry: Registry, tmp: Path) -> None:
    config = image_config({"Entrypoint": ["/app.wasm"]})
    layer = Descriptor.of(LAYER_TAR_GZIP, bomb)
    manifest = {"config": Descriptor.of(OCI_CONFIG, config).to_json(), "layers": [layer.to_json()]}
    ref = f"{registry.host}/hostile/bomb:v1"
    publish(registry.host, "hostile/bomb:v1", manifest, OCI_MANIFEST, [config, bomb])
    done = run_measured("oci", "pull", ref, env={"WASMHOST_CACHE_DIR": str(tmp)})
    assert (done.code, done.stderr) == (
        1,
        f"wasmhost: {ref}: layer {layer.digest} expands past the 256 MiB module size limit; refusing it\n",
    )
    assert done.peak_rss < RSS_BOUND, f"peak RSS {done.peak_rss / MiB:.0f} MiB"
    assert _files(tmp) == []


def _endless_json(total: int) -> Callable[[], Iterator[bytes]]:
    """A JSON object that never closes: '{' then spaces, `total` bytes in all."""

    def body() -> Iterator[bytes]:
        yield b"{"
        spaces = b" " * MiB
        for _ in range(total // MiB):
            yield spaces

    return body


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "until-close"])
def test_an_oversized_manifest_is_refused_in_bounded_memory(
    hostile: Callable[[Mapping[str, Answer]], Hostile], tmp: Path, announced: bool
) -> None:
    total = 600 * MiB
    headers = {"Content-Type": OCI_MANIFEST, **({"Content-Length": str(total + 1)} if announced else {})}
    server = hostile({"/v2/hostile/manifest/manifests/v1": (200, headers, _endless_json(total))})
    ref = f"{server.host}/hostile/manifest:v1"
    done = run_measured("oci", "pull", ref, env={"WASMHOST_CACHE_DIR": str(tmp)})
    size = f" ({total + 1} bytes)" if announced else ""
    assert (done.code, done.stderr) == (
        1,
        f"wasmhost: {ref}: manifest is larger than the 4 MiB limit{size}; refusing it\n",
    )
    assert done.peak_rss < RSS_BOUND, f"peak RSS {done.peak_rss / MiB:.0f} MiB"
    assert _files(tmp) == []


def test_only_the_start_of_an_error_answer_is_read(
    hostile: Callable[[Mapping[str, Answer]], Hostile], tmp: Path
) -> None:
    """The registry's reason is looked for in the first 64 KiB of an error body, however long."""
    server = hostile({"/v2/hostile/error/manifests/v1": (500, {}, _endless_json(600 * MiB))})
    ref = f"{server.host}/hostile/error:v1"
    done = run_measured("oci", "pull", ref, env={"WASMHOST_CACHE_DIR": str(tmp)})
    line = f"wasmhost: {ref}: manifest: registry answered 500 Internal Server Error\n"
    assert (done.code, done.stderr) == (1, line)
    assert done.peak_rss < RSS_BOUND, f"peak RSS {done.peak_rss / MiB:.0f} MiB"


def _once(data: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter([data])


def _serving(hostile: Callable[[Mapping[str, Answer]], Hostile], manifest: dict[str, object], config: bytes) -> str:
    """A hostile registry serving this manifest and config; any other blob gets a 404."""
    body = encode_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, **manifest})
    server = hostile(
        {
            f"/v2/hostile/app/{kind}/{key}": (200, {"Content-Length": str(len(data))}, _once(data))
            for kind, key, data in [("manifests", "v1", body), ("blobs", Descriptor.of("", config).digest, config)]
        }
    )
    return f"{server.host}/hostile/app:v1"


@pytest.mark.parametrize(
    ("config_size", "layer_size", "why"),
    [
        (4 * MiB + 1, 10, "config blob {config} is larger than the 4 MiB limit (4194305 bytes); refusing it"),
        (
            None,
            1 << 40,
            "layer {layer} is larger than the 256 MiB module size limit (1099511627776 bytes); refusing it",
        ),
    ],
)
def test_declared_sizes_past_a_limit_are_refused_before_downloading(
    hostile: Callable[[Mapping[str, Answer]], Hostile], tmp: Path, config_size: int | None, layer_size: int, why: str
) -> None:
    """The descriptor's size is enough to refuse: the blob is never asked for (it would be a 404)."""
    config = Descriptor.of(WASM_CONFIG_V0, b"{}")
    if config_size is not None:
        config = Descriptor(WASM_CONFIG_V0, "sha256:" + "c" * 64, config_size)
    layer = Descriptor(WASM_LAYER, "sha256:" + "a" * 64, layer_size)
    ref = _serving(hostile, {"config": config.to_json(), "layers": [layer.to_json()]}, b"{}")
    with pytest.raises(TooLarge) as caught:
        pull(ref, cache=Cache(tmp), progress=False)
    assert str(caught.value) == f"{ref}: " + why.format(config=config.digest, layer=layer.digest)
    assert _files(tmp) == []


@pytest.mark.parametrize(
    ("fmt", "why"),
    [
        ("artifact", "is larger than the 1 MiB module size limit (2097160 bytes)"),
        ("image", "expands past the 1 MiB module size limit"),
    ],
)
def test_the_module_size_limit_is_configurable(registry: Registry, tmp: Path, fmt: Format, why: str) -> None:
    module = HEADER + bytes(2 * MiB)
    built = build(module, f"{registry.host}/limits/{fmt}:v1", fmt)
    push(built, progress=False)
    ref = str(built.reference)
    refused = run_measured("oci", "pull", "--max-module-size", "1", ref, env={"WASMHOST_CACHE_DIR": str(tmp)})
    line = f"wasmhost: {ref}: layer {digest_of(built.layers[0])} {why}; refusing it\n"
    assert (refused.code, refused.stderr) == (1, line)
    assert _files(tmp) == []
    run = run_measured("run", "--max-module-size", "1", f"oci://{ref}", env={"WASMHOST_CACHE_DIR": str(tmp)})
    assert (run.code, run.stderr) == (1, line)
    assert _files(tmp) == []
    with pytest.raises(TooLarge):
        pull(ref, cache=Cache(tmp), progress=False, max_module_size=MiB)
    assert _files(tmp) == []
    assert pull(ref, cache=Cache(tmp), progress=False).path.read_bytes() == module


def test_the_module_size_limit_must_be_positive(tmp: Path) -> None:
    done = run_measured("oci", "pull", "--max-module-size", "0", "127.0.0.1:1/any:v1", env={})
    assert done.code == 2 and "--max-module-size: '0' must be a positive number of MiB" in done.stderr


def _bearer_registry(hostile: Callable[[Mapping[str, Answer]], Hostile], token: Answer) -> Hostile:
    """A registry that asks for a bearer token from its own /token (answered with `token`) and
    serves an artifact to requests carrying "Bearer t0k"."""
    routes: dict[str, Answer] = {}
    server = hostile(routes)
    config = b"{}"
    layer = Descriptor.of(WASM_LAYER, HEADER)
    manifest = {"config": Descriptor.of(WASM_CONFIG_V0, config).to_json(), "layers": [layer.to_json()]}
    body = encode_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, **manifest})
    challenge = f'Bearer realm="http://{server.host}/token",service="hostile",scope="repository:hostile/app:pull"'
    routes["/v2/hostile/app/manifests/v1"] = (401, {"WWW-Authenticate": challenge, "Content-Length": "0"}, _once(b""))
    routes["/token"] = token
    for key, data in [
        ("manifests/v1", body),
        (f"blobs/{digest_of(config)}", config),
        (f"blobs/{layer.digest}", HEADER),
    ]:
        routes[f"/v2/hostile/app/{key} Bearer t0k"] = (200, {"Content-Length": str(len(data))}, _once(data))
    return server


@pytest.mark.parametrize("credentials", [None, Credentials("me", "pw")], ids=["anonymous", "login"])
def test_a_bearer_token_comes_from_the_realm_the_challenge_names(
    hostile: Callable[[Mapping[str, Answer]], Hostile], tmp: Path, docker_config: Path, credentials: Credentials | None
) -> None:
    server = _bearer_registry(hostile, (200, {}, _once(b'{"token": "t0k"}')))
    pulled = pull(f"{server.host}/hostile/app:v1", cache=Cache(tmp), credentials=credentials, progress=False)
    assert pulled.path.read_bytes() == HEADER
    login = " Basic bWU6cHc=" if credentials else ""
    assert server.requests[:3] == [
        "/v2/hostile/app/manifests/v1",
        f"/token?service=hostile&scope=repository%3Ahostile%2Fapp%3Apull{login}",
        "/v2/hostile/app/manifests/v1 Bearer t0k",
    ]


def test_an_oversized_token_answer_is_refused_in_bounded_memory(
    hostile: Callable[[Mapping[str, Answer]], Hostile], tmp: Path, docker_config: Path
) -> None:
    server = _bearer_registry(hostile, (200, {}, _endless_json(600 * MiB)))
    ref = f"{server.host}/hostile/app:v1"
    done = run_measured("oci", "pull", ref, env={"WASMHOST_CACHE_DIR": str(tmp)})
    assert (done.code, done.stderr) == (
        1,
        f"wasmhost: {ref}: token answer is larger than the 1 MiB limit; refusing it\n",
    )
    assert done.peak_rss < RSS_BOUND, f"peak RSS {done.peak_rss / MiB:.0f} MiB"
    assert _files(tmp) == []
